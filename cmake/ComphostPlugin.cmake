# ComphostPlugin.cmake - build comphost plugins, in this tree and outside it
# (installed with the SDK, and included by find_package(comphost-sdk)).
#
# comphost_add_plugin(<name> SOURCES <files...> [LIBRARIES <targets...>]
#                     [OUTPUT_DIRECTORY <dir>] [INSTALL | NO_INSTALL]
#                     [COMPONENT <component>])
#
# Build a comphost plugin: a MODULE library "<name>.so" (no "lib" prefix, no
# SONAME) against the headers-only SDK, with hidden visibility so that only
# comphost_plugin_query is exported, and "-z defs" so that a symbol the
# plugin needs but no library provides fails the link, not the load.
#
# With INSTALL, or when COMPHOST_PLUGIN_INSTALL is true (the default outside
# this tree), `cmake --install` puts the plugin in COMPHOST_PLUGIN_INSTALL_DIR
# (<libdir>/comphost/plugins under the install prefix), in the install
# component <component>, by default "plugin-<name>" ('_' becomes '-'), which
# CPack turns into the package comphost-plugin-<name>.
#
# comphost_abi_depends(<variable>)
#
# Set <variable> to the Debian dependency of a plugin built against this SDK:
# "comphost-abi-<major> (>= <major>.<minor>)", which any comphost host of the
# same ABI major and at least that minor provides.
function(comphost_add_plugin name)
  cmake_parse_arguments(P "INSTALL;NO_INSTALL" "OUTPUT_DIRECTORY;COMPONENT"
                        "SOURCES;LIBRARIES" ${ARGN})
  add_library(${name} MODULE ${P_SOURCES})
  target_link_libraries(${name} PRIVATE comphost::sdk ${P_LIBRARIES})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    C_STANDARD 11)
  if(P_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${P_OUTPUT_DIRECTORY})
  endif()
  target_link_options(${name} PRIVATE "LINKER:-z,defs" "LINKER:--as-needed")

  if(P_NO_INSTALL OR NOT (P_INSTALL OR COMPHOST_PLUGIN_INSTALL))
    return()
  endif()
  if(NOT COMPHOST_PLUGIN_INSTALL_DIR)
    message(FATAL_ERROR "comphost_add_plugin(${name}): COMPHOST_PLUGIN_INSTALL_DIR is not set"
                        " (find_package(comphost-sdk) sets it)")
  endif()
  if(NOT P_COMPONENT)
    string(REPLACE "_" "-" P_COMPONENT "plugin-${name}")
    string(TOLOWER ${P_COMPONENT} P_COMPONENT)
  endif()
  install(TARGETS ${name} LIBRARY DESTINATION ${COMPHOST_PLUGIN_INSTALL_DIR}
          COMPONENT ${P_COMPONENT})
  set_property(GLOBAL APPEND PROPERTY COMPHOST_PLUGIN_COMPONENTS ${P_COMPONENT})
endfunction()

function(comphost_abi_depends variable)
  if(NOT DEFINED COMPHOST_ABI_MAJOR OR NOT DEFINED COMPHOST_ABI_MINOR)
    message(FATAL_ERROR "comphost_abi_depends: COMPHOST_ABI_MAJOR/MINOR are not set"
                        " (find_package(comphost-sdk) sets them)")
  endif()
  set(${variable}
      "comphost-abi-${COMPHOST_ABI_MAJOR} (>= ${COMPHOST_ABI_MAJOR}.${COMPHOST_ABI_MINOR})"
      PARENT_SCOPE)
endfunction()
