#!/bin/sh
# Fetches Debian 11's libssl1.1 (OpenSSL 1.1.1, not in Debian 12) into DIR
# for the OpenSSL 1.1 resolution tests, without touching the system's apt
# configuration: a private source list, state and cache under DIR.
# Usage: get-libssl1.1.sh [DIR]   (default /var/cache/authprobe/libssl1.1)
set -eu
dir=${1:-/var/cache/authprobe/libssl1.1}
mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial"
echo 'deb http://deb.debian.org/debian bullseye main' > "$dir/apt/sources.list"
opts="-o Dir::Etc::SourceList=$dir/apt/sources.list -o Dir::Etc::SourceParts=/dev/null
 -o Dir::State::Lists=$dir/apt/lists -o Dir::Cache=$dir/apt/cache -o APT::Get::List-Cleanup=0"
apt-get $opts update >/dev/null
cd "$dir"
apt-get $opts download libssl1.1 >/dev/null 2>&1
dpkg-deb -x libssl1.1_*.deb root
rm -rf "$dir/apt" libssl1.1_*.deb
ls "$dir/root/usr/lib/x86_64-linux-gnu/libssl.so.1.1"
