#!/usr/bin/env bash
# Checks the generated code of the codec kernels (collectives/src/compress/kernels_*.cc) in the
# built library: every AVX2 kernel contains ymm (256-bit) instructions, the fp16 ones the F16C
# conversions on ymm registers, and no portable kernel contains any VEX instruction, so neither
# a silently failed vectorization nor an AVX2 leak into the baseline path goes unnoticed.
# usage: codec_disasm_test.sh LIBRARY
set -uo pipefail
lib=${1:?usage: codec_disasm_test.sh LIBRARY}
[ "$(uname -m)" = x86_64 ] || { echo "SKIP: no AVX2 kernels on $(uname -m)"; exit 77; }
command -v objdump >/dev/null || { echo "FAIL: objdump (binutils) not found"; exit 1; }
dis=$(mktemp); trap 'rm -f "$dis"' EXIT
objdump -d --no-show-raw-insn -C "$lib" >"$dis" || { echo "FAIL: objdump -d $lib"; exit 1; }

# body ISA KERNEL: the instructions of rdmacoll::collectives::compress::ISA::...::KERNEL(...)
body() {
  awk -v want="compress::$1::(anonymous namespace)::$2(" '
    /^[0-9a-f]+ </ { inside = index($0, want) > 0; next }
    /^$/ { inside = 0 }
    inside { print }' "$dis"
}

# vex: the lines whose mnemonic is a VEX one (v...), judged on the mnemonic alone: objdump's
# "# <symbol>" comments name types too, such as UBSan's "typeinfo name for void (...)".
vex() { sed 's/#.*//' | grep -E '^\s*[0-9a-f]+:\s+v[a-z0-9]+(\s|$)'; }

status=0
kernels="half_encode half_decode int8_encode int8_decode sign_encode sign_decode stochastic_encode stochastic_decode
         topk_candidates sparse_expand"
for k in $kernels; do
  avx=$(body avx2 "$k")
  port=$(body portable "$k")
  [ -n "$avx" ] || { echo "FAIL: avx2 kernel $k not found in $lib"; status=1; continue; }
  [ -n "$port" ] || { echo "FAIL: portable kernel $k not found in $lib"; status=1; continue; }
  n=$(grep -c 'ymm' <<<"$avx")
  if [ "$n" -eq 0 ]; then echo "FAIL: avx2 $k has no ymm instruction (not vectorized)"; status=1
  else echo "ok: avx2 $k: $n instructions on ymm registers"; fi
  if vex <<<"$port" >/dev/null; then
    echo "FAIL: portable $k contains VEX instructions:"; vex <<<"$port" | head -3; status=1
  fi
done
grep -qE 'vcvtps2ph\s.*ymm' <<<"$(body avx2 half_encode)" || { echo "FAIL: avx2 half_encode has no vcvtps2ph from ymm"; status=1; }
grep -qE 'vcvtph2ps\s.*ymm' <<<"$(body avx2 half_decode)" || { echo "FAIL: avx2 half_decode has no vcvtph2ps to ymm"; status=1; }
[ $status = 0 ] && echo "PASS"
exit $status
