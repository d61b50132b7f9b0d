# Runs a program and passes only when it exits with 0 AND its output matches
# a regular expression (ctest's PASS_REGULAR_EXPRESSION alone ignores the
# exit code).
#   cmake -DPROGRAM=<path> -DPASS_REGEX=<regex> -P RunAndMatch.cmake
execute_process(COMMAND "${PROGRAM}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} exited with ${rc}")
endif()
if(NOT out MATCHES "${PASS_REGEX}")
  message(FATAL_ERROR "${PROGRAM}: output does not match '${PASS_REGEX}'")
endif()
