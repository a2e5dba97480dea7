#!/usr/bin/env bash
# Publishes attnref, the bench and the test runner (attnref-tests: the test assembly with a small runner, for a
# machine without the .NET SDK) self-contained for linux-x64 into one folder (they share the runtime; the GPU machine
# has no .NET) and packs it into .device/, which .git/info/exclude keeps out of git; the device tool carries it with
# `carry: [".device"]`.
set -euo pipefail
cd "$(dirname "$0")/../.."
exclude=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$exclude")"
grep -qx '/.device/' "$exclude" 2>/dev/null || echo '/.device/' >> "$exclude"
rm -rf .device && mkdir -p .device/attnref
# The test runner first: attnref's own publish then overwrites the copy of attnref the tests bring along.
for project in tests/AttentionReference.Tests.Runner src/AttentionReference.Cli bench/AttentionReference.Bench; do
  dotnet publish "$project" -c Release -r linux-x64 --self-contained -o .device/attnref -p:DebugType=none >/dev/null
done
tar -C .device -cf - attnref | xz -T0 -1 > .device/attnref.tar.xz
rm -rf .device/attnref
ls -la .device/attnref.tar.xz
