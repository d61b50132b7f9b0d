########### AGGREGATED COMPONENTS AND DEPENDENCIES FOR THE MULTI CONFIG #####################
#############################################################################################

set(queue_listener_COMPONENT_NAMES "")
if(DEFINED queue_listener_FIND_DEPENDENCY_NAMES)
  list(APPEND queue_listener_FIND_DEPENDENCY_NAMES )
  list(REMOVE_DUPLICATES queue_listener_FIND_DEPENDENCY_NAMES)
else()
  set(queue_listener_FIND_DEPENDENCY_NAMES )
endif()

########### VARIABLES #######################################################################
#############################################################################################
set(queue_listener_PACKAGE_FOLDER_RELEASE "/work/main/build/conan-home/p/b/queue300a957a9f1c0/p")
set(queue_listener_BUILD_MODULES_PATHS_RELEASE )


set(queue_listener_INCLUDE_DIRS_RELEASE "${queue_listener_PACKAGE_FOLDER_RELEASE}/include")
set(queue_listener_RES_DIRS_RELEASE )
set(queue_listener_DEFINITIONS_RELEASE )
set(queue_listener_SHARED_LINK_FLAGS_RELEASE )
set(queue_listener_EXE_LINK_FLAGS_RELEASE )
set(queue_listener_OBJECTS_RELEASE )
set(queue_listener_COMPILE_DEFINITIONS_RELEASE )
set(queue_listener_COMPILE_OPTIONS_C_RELEASE )
set(queue_listener_COMPILE_OPTIONS_CXX_RELEASE )
set(queue_listener_LIB_DIRS_RELEASE "${queue_listener_PACKAGE_FOLDER_RELEASE}/lib")
set(queue_listener_BIN_DIRS_RELEASE "${queue_listener_PACKAGE_FOLDER_RELEASE}/bin")
set(queue_listener_LIBRARY_TYPE_RELEASE SHARED)
set(queue_listener_IS_HOST_WINDOWS_RELEASE 0)
set(queue_listener_LIBS_RELEASE queue_listener)
set(queue_listener_SYSTEM_LIBS_RELEASE )
set(queue_listener_FRAMEWORK_DIRS_RELEASE )
set(queue_listener_FRAMEWORKS_RELEASE )
set(queue_listener_BUILD_DIRS_RELEASE )
set(queue_listener_NO_SONAME_MODE_RELEASE FALSE)


# COMPOUND VARIABLES
set(queue_listener_COMPILE_OPTIONS_RELEASE)
if (NOT "${queue_listener_COMPILE_OPTIONS_CXX_RELEASE}" STREQUAL "")
    list(APPEND queue_listener_COMPILE_OPTIONS_RELEASE
        "$<$<COMPILE_LANGUAGE:CXX>:${queue_listener_COMPILE_OPTIONS_CXX_RELEASE}>")
endif ()
if (NOT "${queue_listener_COMPILE_OPTIONS_C_RELEASE}" STREQUAL "")
    list(APPEND queue_listener_COMPILE_OPTIONS_RELEASE
        "$<$<COMPILE_LANGUAGE:C>:${queue_listener_COMPILE_OPTIONS_C_RELEASE}>")
endif ()
set(queue_listener_LINKER_FLAGS_RELEASE)
if (NOT "${queue_listener_SHARED_LINK_FLAGS_RELEASE}" STREQUAL "")
    list(APPEND queue_listener_LINKER_FLAGS_RELEASE
        "$<$<OR:$<STREQUAL:$<TARGET_PROPERTY:TYPE>,SHARED_LIBRARY>,$<STREQUAL:$<TARGET_PROPERTY:TYPE>,MODULE_LIBRARY>>:${queue_listener_SHARED_LINK_FLAGS_RELEASE}>")
endif ()
if (NOT "${queue_listener_EXE_LINK_FLAGS_RELEASE}" STREQUAL "")
    list(APPEND queue_listener_LINKER_FLAGS_RELEASE
        "$<$<STREQUAL:$<TARGET_PROPERTY:TYPE>,EXECUTABLE>:${queue_listener_EXE_LINK_FLAGS_RELEASE}>")
endif ()


set(queue_listener_COMPONENTS_RELEASE )