# Load the debug and release variables
file(GLOB DATA_FILES "${CMAKE_CURRENT_LIST_DIR}/QueueListener-*-data.cmake")

foreach(f ${DATA_FILES})
    include(${f})
endforeach()

# Create the targets for all the components
foreach(_COMPONENT ${queue_listener_COMPONENT_NAMES} )
    if(NOT TARGET ${_COMPONENT})
        add_library(${_COMPONENT} INTERFACE IMPORTED)
        message(${QueueListener_MESSAGE_MODE} "Conan: Component target declared '${_COMPONENT}'")
    endif()
endforeach()

if(NOT TARGET QueueListener::queue_listener)
    add_library(QueueListener::queue_listener INTERFACE IMPORTED)
    message(${QueueListener_MESSAGE_MODE} "Conan: Target declared 'QueueListener::queue_listener'")
endif()
# Load the debug and release library finders
file(GLOB CONFIG_FILES "${CMAKE_CURRENT_LIST_DIR}/QueueListener-Target-*.cmake")

foreach(f ${CONFIG_FILES})
    include(${f})
endforeach()