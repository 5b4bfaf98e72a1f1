# Read by cpack for each generator (CPACK_PROJECT_CONFIG_FILE): every Debian
# package takes its summary from the first line of its component's
# description, not the project's one line, which fits the host alone.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "")
