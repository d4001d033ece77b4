#!/bin/sh
# replay.sh: runs every fuzz target over its seed corpus (and any
# regression inputs kept there). A crash, sanitizer report or leak fails
# the test.
set -eu
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
for t in xmlparse s2sstream component service conf; do
    "$top_builddir/test/fuzz/replay_$t" "$top_srcdir/test/fuzz/corpus/$t"
done
