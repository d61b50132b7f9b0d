# Avoid multiple calls to find_package to append duplicated properties to the targets
include_guard()########### VARIABLES #######################################################################
#############################################################################################
set(queue_listener_FRAMEWORKS_FOUND_RELEASE "") # Will be filled later
conan_find_apple_frameworks(queue_listener_FRAMEWORKS_FOUND_RELEASE "${queue_listener_FRAMEWORKS_RELEASE}" "${queue_listener_FRAMEWORK_DIRS_RELEASE}")

set(queue_listener_LIBRARIES_TARGETS "") # Will be filled later


######## Create an interface target to contain all the dependencies (frameworks, system and conan deps)
if(NOT TARGET queue_listener_DEPS_TARGET)
    add_library(queue_listener_DEPS_TARGET INTERFACE IMPORTED)
endif()

set_property(TARGET queue_listener_DEPS_TARGET
             APPEND PROPERTY INTERFACE_LINK_LIBRARIES
             $<$<CONFIG:Release>:${queue_listener_FRAMEWORKS_FOUND_RELEASE}>
             $<$<CONFIG:Release>:${queue_listener_SYSTEM_LIBS_RELEASE}>
             $<$<CONFIG:Release>:>)

####### Find the libraries declared in cpp_info.libs, create an IMPORTED target for each one and link the
####### queue_listener_DEPS_TARGET to all of them
conan_package_library_targets("${queue_listener_LIBS_RELEASE}"    # libraries
                              "${queue_listener_LIB_DIRS_RELEASE}" # package_libdir
                              "${queue_listener_BIN_DIRS_RELEASE}" # package_bindir
                              "${queue_listener_LIBRARY_TYPE_RELEASE}"
                              "${queue_listener_IS_HOST_WINDOWS_RELEASE}"
                              queue_listener_DEPS_TARGET
                              queue_listener_LIBRARIES_TARGETS  # out_libraries_targets
                              "_RELEASE"
                              "queue_listener"    # package_name
                              "${queue_listener_NO_SONAME_MODE_RELEASE}")  # soname

# FIXME: What is the result of this for multi-config? All configs adding themselves to path?
set(CMAKE_MODULE_PATH ${queue_listener_BUILD_DIRS_RELEASE} ${CMAKE_MODULE_PATH})

########## GLOBAL TARGET PROPERTIES Release ########################################
    set_property(TARGET QueueListener::queue_listener
                 APPEND PROPERTY INTERFACE_LINK_LIBRARIES
                 $<$<CONFIG:Release>:${queue_listener_OBJECTS_RELEASE}>
                 $<$<CONFIG:Release>:${queue_listener_LIBRARIES_TARGETS}>
                 )

    if("${queue_listener_LIBS_RELEASE}" STREQUAL "")
        # If the package is not declaring any "cpp_info.libs" the package deps, system libs,
        # frameworks etc are not linked to the imported targets and we need to do it to the
        # global target
        set_property(TARGET QueueListener::queue_listener
                     APPEND PROPERTY INTERFACE_LINK_LIBRARIES
                     queue_listener_DEPS_TARGET)
    endif()

    set_property(TARGET QueueListener::queue_listener
                 APPEND PROPERTY INTERFACE_LINK_OPTIONS
                 $<$<CONFIG:Release>:${queue_listener_LINKER_FLAGS_RELEASE}>)
    set_property(TARGET QueueListener::queue_listener
                 APPEND PROPERTY INTERFACE_INCLUDE_DIRECTORIES
                 $<$<CONFIG:Release>:${queue_listener_INCLUDE_DIRS_RELEASE}>)
    # Necessary to find LINK shared libraries in Linux
    set_property(TARGET QueueListener::queue_listener
                 APPEND PROPERTY INTERFACE_LINK_DIRECTORIES
                 $<$<CONFIG:Release>:${queue_listener_LIB_DIRS_RELEASE}>)
    set_property(TARGET QueueListener::queue_listener
                 APPEND PROPERTY INTERFACE_COMPILE_DEFINITIONS
                 $<$<CONFIG:Release>:${queue_listener_COMPILE_DEFINITIONS_RELEASE}>)
    set_property(TARGET QueueListener::queue_listener
                 APPEND PROPERTY INTERFACE_COMPILE_OPTIONS
                 $<$<CONFIG:Release>:${queue_listener_COMPILE_OPTIONS_RELEASE}>)

########## For the modules (FindXXX)
set(queue_listener_LIBRARIES_RELEASE QueueListener::queue_listener)
