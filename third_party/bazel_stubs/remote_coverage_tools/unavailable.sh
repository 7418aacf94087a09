#!/bin/sh
echo "bazel coverage is unavailable offline (third_party/bazel_stubs/remote_coverage_tools is a stand-in)" >&2
exit 1
