#!/usr/bin/env bash
# bench/bundle.sh: a built program (the suite, by default) and every shared
# library it loads, glibc's loader included, in one folder that runs on
# another x86-64 Linux machine without Debian's Abseil, liburing, oneTBB
# or Boost packages (a lent 16-core machine, say: bench/README.md,
# "Scaling").
#
#   ./bazelw build -c opt //bench:suite
#   bench/bundle.sh DIR [PROGRAM]   # PROGRAM: default bazel-bin/bench/suite
#   DIR/suite --out results         # runs PROGRAM with the bundled libraries
#
# DIR/<name> is a wrapper that starts DIR/lib/<name> through the bundled
# loader with only DIR/lib on its search path (the host's ld.so.cache is
# not read), so the host's glibc does not matter.  The program sees
# /proc/self/exe as the loader: programs that re-execute themselves
# (bench/poll_profile) do not run bundled; the suite's rows do.
# DIR must not exist or be empty.  Exit 2 for bad input.
set -euo pipefail

if (($# < 1 || $# > 2)); then
  echo "usage: bench/bundle.sh DIR [PROGRAM]" >&2
  exit 2
fi
dir=$1
program=${2:-bazel-bin/bench/suite}
if [[ ! -f "$program" || ! -x "$program" ]]; then
  echo "bundle.sh: no program at '$program' (build it: ./bazelw build" \
    "-c opt //bench:suite)" >&2
  exit 2
fi
if [[ -e "$dir" && -n "$(ls -A "$dir")" ]]; then
  echo "bundle.sh: '$dir' is not empty: want a new or empty folder" >&2
  exit 2
fi
name=$(basename "$program")
mkdir -p "$dir/lib"

# ldd prints "libx.so => /path (0x...)" for each library and "/path/ld-...
# (0x...)" for the loader; a library it cannot find is "=> not found".
listing=$(ldd "$program" 2>&1) || {
  echo "bundle.sh: ldd cannot read '$program':" >&2
  echo "$listing" >&2
  exit 2
}
if grep -q "not found" <<<"$listing"; then
  echo "bundle.sh: '$program' needs libraries this machine lacks:" >&2
  grep "not found" <<<"$listing" >&2
  exit 2
fi
loader=""
while read -r first arrow path _; do
  if [[ "$arrow" == "=>" && "$path" == /* ]]; then
    cp -L "$path" "$dir/lib/$first"
  elif [[ "$first" == /*ld-linux* ]]; then
    loader=$(basename "$first")
    cp -L "$first" "$dir/lib/$loader"
  fi
done <<<"$listing"
if [[ -z "$loader" ]]; then
  echo "bundle.sh: '$program' names no ELF loader (static?): copy it as is" >&2
  exit 2
fi
cp -L "$program" "$dir/lib/$name"
chmod u+w,+x "$dir/lib/$name" "$dir/lib/$loader"

cat >"$dir/$name" <<EOF
#!/bin/sh
# Written by bench/bundle.sh: runs lib/$name with the libraries beside it.
here=\$(cd "\$(dirname "\$0")" && pwd)
exec "\$here/lib/$loader" --inhibit-cache --library-path "\$here/lib" \\
  "\$here/lib/$name" "\$@"
EOF
chmod +x "$dir/$name"
echo "bundle.sh: $dir/$name ($(du -sh "$dir" | cut -f1)," \
  "$(ls "$dir/lib" | wc -l) files)" >&2
