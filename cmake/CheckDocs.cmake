# Builds the API reference and fails on any documentation warning.
#   cmake -DDOXYGEN=<doxygen> -DDOXYFILE=<Doxyfile> -DLOG=<warnings.log> -P CheckDocs.cmake
file(REMOVE "${LOG}")
execute_process(COMMAND "${DOXYGEN}" "${DOXYFILE}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "doxygen failed (${rc}): ${out}${err}")
endif()
file(READ "${LOG}" warnings)
if(NOT warnings STREQUAL "")
  message(FATAL_ERROR "documentation warnings:\n${warnings}")
endif()
message("docs: OK, no documentation warning")
