# Thin wrapper: the real work is in scripts/ and CMake.
.PHONY: run test build clean
run:
	scripts/run.sh
test:
	scripts/test.sh
build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build -j
clean:
	rm -rf build build-asan
