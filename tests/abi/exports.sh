#!/usr/bin/env bash
# Every symbol libllm.so exports is llm_* (plus the version node LLM_1.0), and the SONAME is
# libllm.so.1. Usage: exports.sh path/to/libllm.so
set -u
lib=$1
syms=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//')
bad=$(echo "$syms" | grep -vE '^(llm_[a-z0-9][a-z0-9_]*|LLM_1\.0)$' || true)
n=$(echo "$syms" | grep -cE '^llm_[a-z0-9]')
internal=$(echo "$syms" | grep -E '^llm__' || true)
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
pass=0; fail=0
if [ -z "$bad" ] && [ -z "$internal" ]; then pass=$((pass + 1)); echo "ok   only llm_* exported ($n symbols)"; else fail=$((fail + 1)); echo "FAIL unexpected exports:"; echo "$bad $internal"; fi
if [ "$soname" = "libllm.so.1" ]; then pass=$((pass + 1)); echo "ok   SONAME $soname"; else fail=$((fail + 1)); echo "FAIL SONAME '$soname'"; fi
# every function declared LLM_API in llm.h is exported
hdr=$(dirname "$0")/../../include/llm.h
missing=$(grep -oE 'LLM_API [^(]*\b(llm_[a-z0-9_]+)\(' "$hdr" | grep -oE 'llm_[a-z0-9_]+\($' | tr -d '(' | while read -r f; do echo "$syms" | grep -qx "$f" || echo "$f"; done)
if [ -z "$missing" ]; then pass=$((pass + 1)); echo "ok   every LLM_API function is exported"; else fail=$((fail + 1)); echo "FAIL declared but not exported: $missing"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
