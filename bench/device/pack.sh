#!/usr/bin/env bash
# Publishes a self-contained attnref for linux-x64 (the GPU machine has no .NET) and packs it into .device/,
# which .git/info/exclude keeps out of git; the device tool carries it with `carry: [".device"]`.
set -euo pipefail
cd "$(dirname "$0")/../.."
exclude=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$exclude")"
grep -qx '/.device/' "$exclude" 2>/dev/null || echo '/.device/' >> "$exclude"
rm -rf .device/attnref && mkdir -p .device
dotnet publish src/AttentionReference.Cli -c Release -r linux-x64 --self-contained -o .device/attnref -p:DebugType=none >/dev/null
tar -C .device -cJf .device/attnref.tar.xz attnref
rm -rf .device/attnref
ls -la .device/attnref.tar.xz
