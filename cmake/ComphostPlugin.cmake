# comphost_add_plugin(<name> SOURCES <files...> [LIBRARIES <targets...>])
#
# Build a comphost plugin: a MODULE library "<name>.so" (no "lib" prefix, no
# SONAME) against the headers-only SDK, with hidden visibility so that only
# comphost_plugin_query is exported, and "-z defs" so that a symbol the
# plugin needs but no library provides fails the link, not the load.
function(comphost_add_plugin name)
  cmake_parse_arguments(P "" "OUTPUT_DIRECTORY" "SOURCES;LIBRARIES" ${ARGN})
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
endfunction()
