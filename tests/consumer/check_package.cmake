# Included by the consumer projects right after find_package(QueueListener):
# stops the configure unless the package found is the installed one under
# test and points only into it, so that a consumer can never pass by
# building against the source tree, the build tree or another install.
#
#   -DQL_EXPECT_LIBDIR=<dir> -DQL_EXPECT_INCLUDEDIR=<dir>   (absolute)
#
# Also defines ql_add_loads_from_test(<name> <target>): a test that the
# program, as built, loads libqueue_listener from QL_EXPECT_LIBDIR.
set(_ql_consumer_dir "${CMAKE_CURRENT_LIST_DIR}")
foreach(_var QL_EXPECT_LIBDIR QL_EXPECT_INCLUDEDIR)
  if(NOT IS_ABSOLUTE "${${_var}}" OR NOT IS_DIRECTORY "${${_var}}")
    message(FATAL_ERROR "consumer: -D${_var}=<an existing absolute dir> is required, not '${${_var}}'")
  endif()
  file(REAL_PATH "${${_var}}" ${_var})
endforeach()

# Fails unless the file `path` exists and lies directly in `dir`.
function(ql_expect_in what path dir)
  get_filename_component(_parent "${path}" DIRECTORY)
  file(REAL_PATH "${_parent}" _parent)
  if(NOT EXISTS "${path}" OR NOT _parent STREQUAL dir)
    message(FATAL_ERROR "consumer: ${what} is ${path}, which is not a file in ${dir}")
  endif()
  message(STATUS "consumer: ${what}: ${path}")
endfunction()

ql_expect_in("QueueListener_DIR" "${QueueListener_DIR}/QueueListenerConfig.cmake"
             "${QL_EXPECT_LIBDIR}/cmake/QueueListener")
foreach(_target IN ITEMS QueueListener::queue_listener QueueListener::queue_listener_static)
  get_target_property(_location ${_target} IMPORTED_LOCATION)
  ql_expect_in("${_target}" "${_location}" "${QL_EXPECT_LIBDIR}")
  get_target_property(_includes ${_target} INTERFACE_INCLUDE_DIRECTORIES)
  if(NOT _includes)
    message(FATAL_ERROR "consumer: ${_target} has no include directory")
  endif()
  foreach(_dir IN LISTS _includes)
    foreach(_header IN ITEMS queue_listener.h queue_listener.hpp)
      ql_expect_in("${_target} includes" "${_dir}/${_header}" "${QL_EXPECT_INCLUDEDIR}")
    endforeach()
  endforeach()
endforeach()

function(ql_add_loads_from_test name target)
  add_test(NAME ${name}
    COMMAND sh "${_ql_consumer_dir}/loads_from.sh" "$<TARGET_FILE:${target}>" "${QL_EXPECT_LIBDIR}")
  set_tests_properties(${name} PROPERTIES PASS_REGULAR_EXPRESSION "loads_from: OK")
endfunction()
