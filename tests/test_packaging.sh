#!/usr/bin/env bash
# test_packaging.sh STEP SOURCE_DIR WORK_DIR ABI_MAJOR ABI_MINOR - the install,
# the SDK and the packages, as a plugin author and an operator meet them.
#
#   build   configure SOURCE_DIR for /usr (no tests) into WORK_DIR/build, and
#           build it: the tree the other steps install and package
#   sdk     `cmake --install` it into a temporary prefix and check the layout;
#           build examples/greeter there with CMake (find_package) and again
#           with plain cc and pkg-config, load both into the installed host,
#           build its unit test with the installed test kit both ways and
#           run it, package the example; check that every plugin exports one
#           symbol and needs no host library (nm -D, readelf -d)
#   cpack   run cpack on it and check the packages with dpkg-deb: contents,
#           dependencies, the ABI they provide and need; verify the systemd
#           unit when systemd-analyze is there
set -euo pipefail

step=$1
src=$2
work=$3
abi_major=$4
abi_minor=$5
build=$work/build

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# the lines of $1 that match the regex $2; fails when none does
must_match() {
  grep -E -- "$2" <<<"$1" >/dev/null || fail "expected /$2/ in:"$'\n'"$1"
}

must_not_match() {
  if grep -E -- "$2" <<<"$1" >/dev/null; then
    fail "did not expect /$2/ in:"$'\n'"$1"
  fi
}

cache_value() {
  sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"
}

# A plugin exports comphost_plugin_query and nothing else, needs only the C
# library, jansson and what it declares (libpq, libcurl), no host library,
# and has no run path.
check_plugin_elf() {
  local so=$1 exports needed
  exports=$(nm -D --defined-only "$so" | awk '{ print $NF }')
  [ "$exports" = comphost_plugin_query ] ||
    fail "$so exports more or other than comphost_plugin_query:"$'\n'"$exports"
  needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  while read -r lib; do
    case "$lib" in
      libc.so.*|libjansson.so.*|libpq.so.*|libcurl.so.*) ;;
      *) fail "$so needs $lib" ;;
    esac
  done <<<"$needed"
  must_not_match "$(readelf -d "$so")" '\((RPATH|RUNPATH|SONAME)\)'
}

step_build() {
  mkdir -p "$work"
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_INSTALL_PREFIX=/usr \
        -DBUILD_TESTING=OFF -DCOMPHOST_SANITIZE=OFF >"$work/configure.log" ||
    { cat "$work/configure.log"; fail "configuring for /usr"; }
  cmake --build "$build" -j"$(nproc)" >"$work/build.log" 2>&1 ||
    { cat "$work/build.log"; fail "building for /usr"; }
}

step_sdk() {
  local libdir prefix out pc so plugdir ini
  libdir=$(cache_value CMAKE_INSTALL_LIBDIR)
  [ -n "$libdir" ] || fail "no CMAKE_INSTALL_LIBDIR in $build"
  rm -rf "$work/sdk"
  prefix=$work/sdk/prefix
  cmake --install "$build" --prefix "$prefix" >"$work/sdk-install.log"

  # the layout
  for f in bin/comphost include/comphost/plugin.h include/comphost/message.h \
           include/comphost/testkit.h "$libdir/libcomphost-testkit.a" \
           "$libdir/pkgconfig/comphost-testkit.pc" \
           "$libdir/cmake/comphost-sdk/comphost-sdkConfig.cmake" \
           "$libdir/cmake/comphost-sdk/comphost-sdkConfigVersion.cmake" \
           "$libdir/cmake/comphost-sdk/comphost-sdk-targets.cmake" \
           "$libdir/cmake/comphost-sdk/ComphostPlugin.cmake" \
           "$libdir/pkgconfig/comphost-sdk.pc" \
           "$libdir/comphost/plugins/identity.so" \
           "$libdir/comphost/plugins/home-page.so" \
           lib/systemd/system/comphost@.service lib/sysusers.d/comphost.conf; do
    [ -e "$prefix/$f" ] || fail "cmake --install did not install $f"
  done
  plugdir=$prefix/$libdir/comphost/plugins
  for so in "$build"/plugins/*.so; do
    [ -e "$plugdir/$(basename "$so")" ] || fail "$(basename "$so") is not installed"
  done

  # the host looks for plugins where they are installed (for /usr)
  out=$(env -u COMPHOST_PLUGIN_DIR "$prefix/bin/comphost" inspect identity 2>&1 || true)
  must_match "$out" "'/usr/$libdir/comphost/plugins/identity\.so': cannot load|^plugin: +identity"
  out=$("$prefix/bin/comphost" inspect identity --plugin-dir "$plugdir")
  must_match "$out" '^plugin: +identity$'

  # the CMake package's version is the ABI's: same major only
  mkdir -p "$work/sdk/probe"
  cat >"$work/sdk/probe/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.20)
project(probe LANGUAGES C)   # C: for the <triplet> of lib/<triplet>/cmake
foreach(v $((abi_major + 1)).0 0.1 $abi_major.$((abi_minor + 1)) $abi_major.0)
  find_package(comphost-sdk \${v} QUIET)
  message(STATUS "comphost-sdk \${v}: \${comphost-sdk_FOUND} \${comphost-sdk_VERSION}")
endforeach()
message(STATUS "plugin dir: \${COMPHOST_PLUGINDIR}")
EOF
  out=$(cmake -S "$work/sdk/probe" -B "$work/sdk/probe/build" -DCMAKE_PREFIX_PATH="$prefix")
  must_match "$out" "comphost-sdk $((abi_major + 1))\.0: 0 "
  must_match "$out" "comphost-sdk 0\.1: 0 "
  must_match "$out" "comphost-sdk $abi_major\.$((abi_minor + 1)): 0 "
  must_match "$out" "comphost-sdk $abi_major\.0: 1 $abi_major\.$abi_minor"
  must_match "$out" "plugin dir: $plugdir\$"

  # the example, a project of its own, against the installed SDK alone
  cmake -S "$src/examples/greeter" -B "$work/sdk/greeter" -DCMAKE_PREFIX_PATH="$prefix" \
        -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >"$work/sdk/greeter.log" ||
    { cat "$work/sdk/greeter.log"; fail "configuring examples/greeter"; }
  must_not_match "$(cat "$work/sdk/greeter/CMakeCache.txt")" "$src/sdk"
  cmake --build "$work/sdk/greeter" >>"$work/sdk/greeter.log" 2>&1 ||
    { cat "$work/sdk/greeter.log"; fail "building examples/greeter"; }
  [ -f "$work/sdk/greeter/greeter.so" ] || fail "examples/greeter made no greeter.so"
  # its unit test, linked with the installed test kit (comphost::testkit)
  [ -x "$work/sdk/greeter/test_greeter" ] || fail "examples/greeter made no test_greeter"
  must_match "$(cat "$work/sdk/greeter/CMakeFiles/test_greeter.dir/link.txt")" \
             "$prefix/$libdir/libcomphost-testkit\.a"
  out=$(ctest --test-dir "$work/sdk/greeter" --output-on-failure 2>&1) ||
    fail "the greeter's unit test against the installed SDK:"$'\n'"$out"
  must_match "$out" '100% tests passed'
  # by default it installs where the SDK's host looks
  cmake --install "$work/sdk/greeter" >>"$work/sdk/greeter.log"
  [ -f "$plugdir/greeter.so" ] || fail "examples/greeter did not install into $plugdir"
  # and packages itself, depending on a host of its ABI
  (cd "$work/sdk/greeter" && cpack -G "DEB;TGZ" >>"$work/sdk/greeter.log") ||
    { cat "$work/sdk/greeter.log"; fail "packaging examples/greeter"; }
  out=$(dpkg-deb -f "$work"/sdk/greeter/comphost-plugin-greeter_*.deb Package Depends)
  must_match "$out" '^Package: comphost-plugin-greeter$'
  must_match "$out" "comphost-abi-$abi_major \(>= $abi_major\.$abi_minor\)"
  must_match "$out" 'libjansson4'
  must_match "$(dpkg-deb -c "$work"/sdk/greeter/comphost-plugin-greeter_*.deb)" \
             "$plugdir/greeter\.so\$"

  # the same file, built with plain cc and pkg-config
  pc() { PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig" pkg-config "$@" comphost-sdk; }
  [ "$(pc --modversion)" = "$abi_major.$abi_minor" ] || fail "pkg-config version: $(pc --modversion)"
  [ "$(pc --variable=abi_major)" = "$abi_major" ] || fail "pkg-config abi_major"
  [ "$(realpath "$(pc --variable=plugindir)")" = "$plugdir" ] ||
    fail "pkg-config plugindir: $(pc --variable=plugindir)"
  must_match "$(pc --cflags)" '-fvisibility=hidden'
  # shellcheck disable=SC2046
  cc -std=c11 -Wall -Wextra -Werror -fPIC -shared $(pc --cflags) \
     -o "$work/sdk/greeter-pc.so" "$src/examples/greeter/greeter.c" \
     -Wl,-z,defs $(pc --libs) || fail "cc with pkg-config"
  # and its unit test, with the test kit's pkg-config file
  tk() { PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig" pkg-config "$@" comphost-testkit cmocka; }
  [ "$(PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig" pkg-config --modversion comphost-testkit)" = \
    "$abi_major.$abi_minor" ] || fail "pkg-config comphost-testkit version"
  # shellcheck disable=SC2046
  cc -std=c11 -Wall -Wextra -Werror $(tk --cflags) -o "$work/sdk/test_greeter-pc" \
     "$src/examples/greeter/test_greeter.c" \
     -DGREETER_PLUGIN="\"$work/sdk/greeter-pc.so\"" $(tk --libs) ||
    fail "cc of test_greeter.c with pkg-config"
  out=$("$work/sdk/test_greeter-pc" 2>&1) || fail "test_greeter built with pkg-config:"$'\n'"$out"
  must_match "$out" 'PASSED'

  # both load into the installed host
  ini=$work/sdk/greeter.ini
  for so in "$work/sdk/greeter/greeter.so" "$work/sdk/greeter-pc.so"; do
    check_plugin_elf "$so"
    must_match "$(readelf -d "$so")" '\(NEEDED\).*\[libjansson\.so\.4\]'
    out=$("$prefix/bin/comphost" inspect "$so")
    must_match "$out" '^plugin: +greeter$'
    must_match "$out" '^  components:greeter: greeting:command$'
    printf '[host]\nmessage_store = postgresql://nobody@127.0.0.1:1/none\n\n[greeter]\nlibrary = %s\n' \
           "$so" >"$ini"
    out=$("$prefix/bin/comphost" check -c "$ini" --no-db) || fail "check of $so:"$'\n'"$out"
    must_match "$out" '\[greeter\] greeter 1\.0\.0 \(component, ABI'
  done

  # every plugin of this tree, as built for the packages
  for so in "$build"/plugins/*.so; do
    check_plugin_elf "$so"
  done
}

step_cpack() {
  local libdir out deb plugins=() files=() name i
  libdir=$(cache_value CMAKE_INSTALL_LIBDIR)
  rm -rf "$work/cpack"
  (cd "$build" && cpack -B "$work/cpack" >"$work/cpack.log" 2>&1) ||
    { cat "$work/cpack.log"; fail "cpack"; }
  for so in "$build"/plugins/*.so; do
    files+=("$(basename "$so")")
    name=$(basename "$so" .so)
    plugins+=("${name//_/-}")
  done
  [ ${#plugins[@]} -ge 3 ] || fail "found only ${#plugins[@]} plugins in $build/plugins"

  # the host, with the SDK and the service
  deb=$(echo "$work"/cpack/comphost_*.deb)
  [ -f "$deb" ] || fail "no comphost .deb in $work/cpack: $(ls "$work/cpack")"
  out=$(dpkg-deb -c "$deb")
  for f in usr/bin/comphost usr/include/comphost/plugin.h usr/include/comphost/message.h \
           usr/include/comphost/testkit.h "usr/$libdir/libcomphost-testkit.a" \
           "usr/$libdir/pkgconfig/comphost-testkit.pc" \
           "usr/$libdir/cmake/comphost-sdk/comphost-sdkConfig.cmake" \
           "usr/$libdir/cmake/comphost-sdk/ComphostPlugin.cmake" \
           "usr/$libdir/pkgconfig/comphost-sdk.pc" \
           usr/lib/systemd/system/comphost@.service usr/lib/sysusers.d/comphost.conf; do
    must_match "$out" " \./$f\$"
  done
  must_not_match "$out" '\.so$'
  out=$(dpkg-deb -f "$deb")
  must_match "$out" '^Package: comphost$'
  must_match "$out" "^Provides: comphost-abi-$abi_major \(= $abi_major\.$abi_minor\)\$"
  must_match "$out" '^Depends: .*libjansson4'
  must_match "$out" '^Depends: .*libpq5'
  must_match "$(dpkg-deb -I "$deb")" ' postinst '

  # one package per plugin, depending on a host of its ABI
  for i in "${!plugins[@]}"; do
    name=${plugins[$i]}
    deb=$(echo "$work/cpack/comphost-plugin-${name}"_*.deb)
    [ -f "$deb" ] || fail "no package for plugin $name: $(ls "$work/cpack")"
    out=$(dpkg-deb -c "$deb" | grep -v '/$')
    [ "$(wc -l <<<"$out")" -eq 1 ] || fail "comphost-plugin-$name holds more than its .so:"$'\n'"$out"
    must_match "$out" " \./usr/$libdir/comphost/plugins/${files[$i]}\$"
    out=$(dpkg-deb -f "$deb" Package Depends)
    must_match "$out" "^Package: comphost-plugin-$name\$"
    must_match "$out" "^Depends: .*comphost-abi-$abi_major \(>= $abi_major\.$abi_minor\)"
    out=$(tar -tzf "$work/cpack/comphost-plugin-${name}"-*.tar.gz)
    must_match "$out" "usr/$libdir/comphost/plugins/${files[$i]}\$"
  done
  must_match "$(dpkg-deb -f "$work"/cpack/comphost-plugin-identity_*.deb Depends)" 'libjansson4'
  must_match "$(dpkg-deb -f "$work"/cpack/comphost-plugin-send-email_*.deb Depends)" 'libcurl'
  out=$(tar -tzf "$work"/cpack/comphost-[0-9]*.tar.gz)
  must_match "$out" '^(\./)?usr/bin/comphost$'

  # the unit, as systemd reads it (skipped where systemd-analyze is missing
  # or cannot run)
  dpkg-deb -x "$work"/cpack/comphost_*.deb "$work/cpack/root"
  out=$(cat "$work/cpack/root/usr/lib/systemd/system/comphost@.service")
  must_match "$out" '^ExecStart=/usr/bin/comphost -c /etc/comphost/%i\.ini$'
  must_match "$out" '^ExecReload=/bin/kill -HUP \$MAINPID$'
  must_match "$out" '^Restart=on-failure$'
  must_match "$out" '^User=comphost$'
  must_match "$out" '^EnvironmentFile=-/etc/comphost/%i\.env$'
  # hardening: a read-only system but for its own directories, no
  # capabilities, and no restart of a refused configuration (exit 1 or 2)
  must_match "$out" '^ProtectSystem=strict$'
  must_match "$out" '^RuntimeDirectory=comphost/%i$'
  must_match "$out" '^StateDirectory=comphost/%i$'
  must_match "$out" '^UMask=0027$'
  must_match "$out" '^CapabilityBoundingSet=$'
  must_match "$out" '^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6$'
  must_match "$out" '^SystemCallFilter=@system-service$'
  must_match "$out" '^SystemCallArchitectures=native$'
  must_match "$out" '^NoNewPrivileges=yes$'
  must_match "$out" '^RestrictNamespaces=yes$'
  must_match "$out" '^ProtectKernelLogs=yes$'
  must_match "$out" '^ProtectClock=yes$'
  must_match "$out" '^ProtectHostname=yes$'
  must_match "$out" '^RestartPreventExitStatus=1 2$'
  if command -v systemd-analyze >/dev/null 2>&1; then
    mkdir -p "$work/cpack/units"
    # the binary as unpacked, since /usr/bin/comphost need not exist here
    sed "s|^ExecStart=/usr/bin/comphost|ExecStart=$work/cpack/root/usr/bin/comphost|" \
        "$work/cpack/root/usr/lib/systemd/system/comphost@.service" \
        >"$work/cpack/units/comphost@.service"
    if out=$(cd "$work/cpack/units" && SYSTEMD_LOG_LEVEL=warning \
             systemd-analyze verify --man=no ./comphost@identity.service 2>&1); then
      must_not_match "$out" 'comphost@'
      # the exposure systemd finds (offline: from the file alone), when this
      # systemd can say; the unit must stay "OK" (below 2.0) or better
      if out=$(cd "$work/cpack/units" && SYSTEMD_LOG_LEVEL=warning \
               systemd-analyze security --offline=yes --no-pager \
               ./comphost@identity.service 2>&1); then
        level=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
        echo "systemd-analyze security: exposure $level"
        if [ -n "$level" ] && ! awk -v l="$level" 'BEGIN { exit !(l < 2.0) }'; then
          echo "the unit's exposure is $level, not below 2.0:"$'\n'"$out" >&2
          exit 1
        fi
      fi
    else
      echo "note: systemd-analyze verify cannot run here, not checked:"$'\n'"$out"
    fi
  fi
}

case "$step" in
  build) step_build ;;
  sdk) step_sdk ;;
  cpack) step_cpack ;;
  *) fail "unknown step $step" ;;
esac
echo "ok: $step"
