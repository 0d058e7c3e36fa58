#!/usr/bin/env bash
# Builds the installable plugin folder and its zip:
#   package.sh BUILD_DIR OUT_DIR [ZIP_DIR]
# BUILD_DIR holds the backend built by CMake (gpx_cachingproxy); OUT_DIR becomes the plugin
# folder (plugin.json, module.js, gpx_cachingproxy_linux_amd64, README.md, CHANGELOG.md,
# LICENSE, img/); ZIP_DIR (default: OUT_DIR's parent) gets
# seed-cachingproxy-datasource-<version>.zip, whose one top-level folder is named after the id.
# Only linux/amd64 is packaged: the backend is built for the host, and no arm64 cross toolchain
# with arm64 builds of its libraries is available here.
set -euo pipefail

PLUGIN_ID=seed-cachingproxy-datasource
EXE=gpx_cachingproxy

build=$(realpath "${1:?usage: package.sh BUILD_DIR OUT_DIR [ZIP_DIR]}")
out=$(realpath -m "${2:?usage: package.sh BUILD_DIR OUT_DIR [ZIP_DIR]}")
zipdir=$(realpath -m "${3:-$(dirname "$out")}")
frontend=$(cd "$(dirname "$0")/.." && pwd)

[ -x "$build/$EXE" ] || { echo "package: $build/$EXE not built (make build)" >&2; exit 1; }
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) echo "package: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac

# the version is the project's (CMake's PROJECT_VERSION, compiled into the executable)
version=$("$build/$EXE" --version | grep -Eo '[0-9]+\.[0-9]+\.[0-9]+[^ ]*' | head -n1)
[ -n "$version" ] || { echo "package: cannot read the version from $EXE --version" >&2; exit 1; }

if [ ! -d "$frontend/node_modules" ]; then
  (cd "$frontend" && npm ci --silent --no-audit --no-fund)
fi
# webpack writes module.js and the static files, cleaning the folder first
(cd "$frontend" && npx --no-install webpack -c webpack.config.js --env production --env "out=$out" --env "version=$version")

# the executable, stripped of debug sections, mode 0755 as Grafana's installer sets it
install -m 0755 "$build/$EXE" "$out/${EXE}_linux_${arch}"
strip --strip-debug "$out/${EXE}_linux_${arch}"

mkdir -p "$zipdir"
zip="$zipdir/$PLUGIN_ID-$version.zip"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -a "$out" "$stage/$PLUGIN_ID"
rm -f "$zip"
(cd "$stage" && zip -qr -X "$zip" "$PLUGIN_ID")
echo "package: $out ($(du -sh "$out" | cut -f1)) and $zip ($(du -h "$zip" | cut -f1))"
