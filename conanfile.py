"""Conan 2 recipe: builds queue_listener with its CMake project (cargo does
the Rust build; a Rust toolchain must be on PATH or in ~/.cargo/bin) and
packages the shared and static libraries, both headers, the CMake package
and the pkg-config file.

    conan create . --build=missing            # the test: ctest -L conan

Consumers: find_package(QueueListener) and QueueListener::queue_listener
(CMakeDeps), or pkg-config queue_listener (PkgConfigDeps).
"""
import os
import re

from conan import ConanFile
from conan.tools.cmake import CMake, CMakeToolchain, cmake_layout
from conan.tools.files import copy, load, rm


class QueueListenerConan(ConanFile):
    name = "queue_listener"
    description = "Python's logging.handlers.QueueListener for C and C++"
    license = "MIT OR Apache-2.0"
    topics = ("logging", "async", "queue", "syslog", "journald")
    package_type = "library"
    settings = "os", "arch", "compiler", "build_type"
    options = {"shared": [True, False]}
    default_options = {"shared": True}
    exports_sources = (
        "Cargo.toml", "Cargo.lock", "build.rs", "cbindgen.toml", "CMakeLists.txt",
        "src/*", "engine/*", "include/*", "cmake/*", "docs/Doxyfile.in",
        "README.md", "LICENSE-MIT", "LICENSE-APACHE",
    )

    def set_version(self):
        # One version: Cargo.toml's.
        toml = load(self, os.path.join(self.recipe_folder, "Cargo.toml"))
        self.version = re.search(r'^version\s*=\s*"([^"]+)"', toml, re.M).group(1)

    def configure(self):
        # A C library with a C++ header-only layer: no C++ standard library
        # is linked into it.
        self.settings.rm_safe("compiler.libcxx")
        self.settings.rm_safe("compiler.cppstd")

    def layout(self):
        cmake_layout(self)

    def generate(self):
        tc = CMakeToolchain(self)
        tc.cache_variables["BUILD_TESTING"] = False
        tc.generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def package(self):
        cmake = CMake(self)
        cmake.install()
        libdir = os.path.join(self.package_folder, "lib")
        # One kind of library per package, so the linker cannot pick the
        # other one.
        if self.options.shared:
            rm(self, "*.a", libdir)
        else:
            rm(self, "*.so*", libdir)
        copy(self, "LICENSE-*", self.source_folder, os.path.join(self.package_folder, "licenses"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "QueueListener")
        self.cpp_info.set_property("cmake_target_name", "QueueListener::queue_listener")
        self.cpp_info.set_property("pkg_config_name", "queue_listener")
        self.cpp_info.libs = ["queue_listener"]
        if not self.options.shared:
            # What the Rust standard library needs from the system.
            self.cpp_info.system_libs = ["pthread", "dl", "m", "rt", "gcc_s", "util"]
