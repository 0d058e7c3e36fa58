# Convenience entry points. The two that matter (see README):
#   make run    installs what is missing, builds, and runs the standalone server
#               (config/standalone.json) in front of a demo upstream until Ctrl-C
#   make test   installs what is missing, builds, and runs every test
# make demo runs the plugin-path walk-through (the executable launched as Grafana launches it)
# make package builds the installable plugin: dist/ and seed-cachingproxy-datasource-<version>.zip
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)

.PHONY: all deps build run demo test test-asan bench clean package

all: build

deps:
	@.ci/bootstrap

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	/usr/bin/python3 bench/standalone_demo.py --build $(BUILD)

demo: build
	/usr/bin/python3 bench/demo.py --build $(BUILD)

test: build
	cd $(BUILD) && ctest -j $(JOBS) --output-on-failure --timeout 300

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCP_SANITIZE=ON >/dev/null

test-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest -j $(JOBS) --output-on-failure --timeout 600

bench: build
	$(BUILD)/cachingproxy-bench-startup --runs 20 $(BUILD)/gpx_cachingproxy
	$(BUILD)/cachingproxy-bench all --plugin $(BUILD)/gpx_cachingproxy
	$(BUILD)/cachingproxy-bench hitpath --rounds 3 --duration 5 --plugin $(BUILD)/gpx_cachingproxy
	$(BUILD)/cachingproxy-bench standalone --rounds 3 --duration 5 --plugin $(BUILD)/gpx_cachingproxy
	$(BUILD)/cachingproxy-bench-policy
	$(BUILD)/cachingproxy-bench-frames --rows 10000
	mkdir -p $(BUILD)/bench-report
	$(BUILD)/cachingproxy-bench preset all --json $(BUILD)/bench-report/report.json \
	  --html $(BUILD)/bench-report/report.html
	$(BUILD)/cachingproxy-bench preset core --json $(BUILD)/bench-report/core.json \
	  --html $(BUILD)/bench-report/core.html
	$(BUILD)/cachingproxy-bench preset redis --json $(BUILD)/bench-report/redis.json \
	  --html $(BUILD)/bench-report/redis.html

package: build
	frontend/scripts/package.sh $(BUILD) dist .

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
