#!/usr/bin/env bash
# ctest conan/create: `conan create` of the recipe in the source tree, in a
# Conan home of its own inside the build tree (nothing of ~/.conan2 is read
# or written; no remote is contacted), then conan/test_package links a C
# program to the package through CMakeDeps and runs it.
#   create.sh SOURCE_DIR CONAN_HOME
set -euo pipefail
src=$1
export CONAN_HOME=$2
if ! command -v conan >/dev/null; then
  echo "SKIP: conan is not installed (pip install conan)"
  exit 0
fi
mkdir -p "$CONAN_HOME"
conan profile detect --force >/dev/null
conan remove -c 'queue_listener/*' >/dev/null 2>&1 || true
log=$CONAN_HOME/create.log
# conan builds the test package inside its folder: use a copy in the build
# tree, so the source tree is never written.
rm -rf "$CONAN_HOME/test_package"
cp -r "$src/conan/test_package" "$CONAN_HOME/test_package"
if ! conan create "$src" --build=missing --no-remote -tf "$CONAN_HOME/test_package" >"$log" 2>&1; then
  tail -40 "$log"
  echo "conan create failed"
  exit 1
fi
grep -E "conan test_package: OK" "$log"
