#!/usr/bin/env python3
"""Generates the hostile GGUF corpus (tests/gguf/hostile/*.gguf) and its
manifest (tests/gguf/hostile.expect). Python standard library only.

    python3 tests/gguf/gen_hostile.py

Every file is small (< 4 KB) and invalid in exactly one way, named after
what it tests. The manifest has one line per file: "NAME<TAB>SUBSTRING"; the
test (test_gguf_hostile) requires md_gguf_open_memory to fail on each with an
error message containing SUBSTRING, and that every file in the directory is
listed (so a stray or missing file fails the test).

Files found by the fuzzer are committed as they are (named fuzz_*.gguf) and
listed in FUZZ_FOUND below; this script does not touch them.
"""
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTDIR = HERE / "hostile"
MANIFEST = HERE / "hostile.expect"

# Inputs found by fuzzing (kept in hostile/ as found): name -> expected substring.
FUZZ_FOUND = {
}

# value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
# tensor types
T_F32, T_F16, T_Q8_0, T_Q4_K = 0, 1, 8, 12


def u32(v): return struct.pack("<I", v & 0xFFFFFFFF)
def u64(v): return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)
def s(b): return u64(len(b)) + b
def kv(key, vtype, payload): return s(key) + u32(vtype) + payload
def kv_u32(key, v): return kv(key, U32, u32(v))
def kv_str(key, v): return kv(key, STR, s(v))
def arr(elem_type, count, payload): return u32(elem_type) + u64(count) + payload
def ti(name, dims, ttype, off):
    return s(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(ttype) + u64(off)


def header(n_t, n_kv, version=3):
    return b"GGUF" + u32(version) + u64(n_t) + u64(n_kv)


def gguf(kvs, tis, data=b"", version=3, n_kv=None, n_t=None, align=32):
    body = header(len(tis) if n_t is None else n_t, len(kvs) if n_kv is None else n_kv, version)
    body += b"".join(kvs) + b"".join(tis)
    body += b"\0" * (-len(body) % align)
    return body + data


# A small valid file: the hostile ones below are variations of it.
# kv0 is long so that a file cut inside a later kv or a tensor info still
# passes the up-front "count x minimal record size <= bytes left" checks and
# reaches the truncated field itself.
BASE_KVS = [
    kv_str(b"general.description", b"hostile corpus base file " * 8),
    kv_u32(b"llama.block_count", 1),
    kv(b"tokenizer.ggml.tokens", ARR, arr(STR, 3, s(b"<unk>") + s(b"<s>") + s(b"</s>"))),
    kv(b"tokenizer.ggml.scores", ARR, arr(F32, 3, struct.pack("<3f", 0, -1, -2))),
    kv_str(b"general.architecture", b"llama"),
]
F32_8 = struct.pack("<8f", *range(8))          # 32 bytes
Q8_BLOCK = b"\x00\x3c" + bytes(range(32))       # d = 1.0, 34 bytes
BASE_TIS = [ti(b"a", [8], T_F32, 0), ti(b"b", [32], T_Q8_0, 32)]
BASE_DATA = F32_8 + Q8_BLOCK + b"\0" * 30        # padded to 96


def base(**kw):
    return gguf(kw.pop("kvs", BASE_KVS), kw.pop("tis", BASE_TIS), kw.pop("data", BASE_DATA), **kw)


def offsets():
    """Byte offsets of the sections of base()."""
    o = {"magic": 0, "version": 4, "n_tensors": 8, "n_kv": 16, "kvs": 24}
    p = 24
    for i, k in enumerate(BASE_KVS):
        o[f"kv{i}"] = p
        p += len(k)
    o["tis"] = p
    for i, t in enumerate(BASE_TIS):
        o[f"ti{i}"] = p
        p += len(t)
    o["end_tis"] = p
    o["data"] = p + (-p % 32)
    return o


def cases():
    c = {}
    full = base()
    o = offsets()
    kv1 = o["kv1"]                       # "llama.block_count" u32
    kv2 = o["kv2"]                       # tokens array
    ti0 = o["ti0"]
    key1_len = len(b"llama.block_count")

    # --- magic / version / counts ---
    c["empty"] = (b"", "empty file (0 bytes)")
    c["trunc_in_magic"] = (b"GG", "truncated: the file has 2 bytes and ends in the header (magic")
    c["bad_magic"] = (b"GGML" + full[4:], "not a GGUF file: starts with 'GGML'")
    c["bad_magic_lowercase"] = (b"gguf" + full[4:], "not a GGUF file: starts with 'gguf'")
    c["trunc_in_version"] = (full[:6], "ends in the header (version at offset 4")
    c["version_0"] = (base(version=0), "version 0")
    c["version_1"] = (base(version=1), "version 1")
    c["version_4"] = (base(version=4), "version 4")
    c["version_99"] = (base(version=99), "version 99")
    c["version_big_endian"] = (b"GGUF" + struct.pack(">I", 3) + full[8:], "big-endian")
    c["trunc_in_n_tensors"] = (full[:12], "ends in the header (tensor count at offset 8")
    c["trunc_in_n_kv"] = (full[:20], "ends in the header (kv count at offset 16")
    c["header_only_no_kv_bytes"] = (full[:24], "truncated: the file has 24 bytes, its header (kv count")
    c["huge_n_kv"] = (base(n_kv=1 << 40), "kv count 1099511627776")
    c["huge_n_kv_u32max"] = (base(n_kv=0xFFFFFFFF), "kv count 4294967295")
    c["negative_n_kv"] = (base(n_kv=-1), "negative")
    c["huge_n_tensors"] = (base(n_t=1 << 40), "tensor count 1099511627776")
    c["negative_n_tensors"] = (base(n_t=-5), "negative")
    c["n_kv_one_too_many"] = (gguf(BASE_KVS, [], b"", n_kv=len(BASE_KVS) + 1, align=1), "ends in kv 5 (key at offset")
    c["n_tensors_one_too_many"] = (gguf(BASE_KVS, BASE_TIS, n_t=3)[:o["end_tis"]] + b"\0" * 4,
                                   "ends in tensor 2 (tensor name at offset")

    # --- keys ---
    c["trunc_in_key_length"] = (full[:kv1 + 4], "ends in kv 1 (key at offset")
    c["trunc_in_key"] = (full[:kv1 + 8 + 5], "key at offset")
    c["huge_key_length"] = (full[:kv1] + u64(1 << 63) + full[kv1 + 8:], "key at offset 263 declares 9223372036854775808 bytes")
    c["key_empty"] = (gguf([kv_u32(b"", 1)], []), "key at offset 24 is empty")
    c["key_with_nul"] = (gguf([kv_u32(b"gen\0eral", 1)], []), "NUL")
    c["key_not_utf8"] = (gguf([kv_u32(b"general.\xffname", 1)], []), "not valid UTF-8")
    c["key_utf8_overlong"] = (gguf([kv_u32(b"\xc0\xafkey", 1)], []), "not valid UTF-8")
    c["key_utf8_surrogate"] = (gguf([kv_u32(b"k\xed\xa0\x80", 1)], []), "not valid UTF-8")
    c["key_utf8_truncated_seq"] = (gguf([kv_u32(b"k\xe2\x82", 1)], []), "not valid UTF-8")
    c["key_utf8_above_10ffff"] = (gguf([kv_u32(b"k\xf4\x90\x80\x80", 1)], []), "not valid UTF-8")
    c["duplicate_key"] = (gguf(BASE_KVS + [kv_u32(b"llama.block_count", 2)], BASE_TIS, BASE_DATA),
                          "duplicate key")

    # --- values ---
    vt = kv1 + 8 + key1_len               # offset of the value type of kv1
    c["trunc_in_value_type"] = (full[:vt + 2], "(value type at offset")
    c["trunc_in_value_u32"] = (full[:vt + 4 + 2], "(uint32 at offset")
    c["unknown_value_type_13"] = (gguf([kv(b"k", 13, u32(0))], []), "unknown value type 13")
    c["unknown_value_type_u32max"] = (gguf([kv(b"k", 0xFFFFFFFF, u32(0))], []), "unknown value type 4294967295")
    c["trunc_in_string_value"] = (gguf([kv_str(b"general.name", b"abcdefghij")], [])[:24 + 8 + 12 + 4 + 8 + 3],
                                  "(string value at offset 48: 10 bytes needed")
    c["huge_string_length"] = (gguf([kv(b"general.name", STR, u64(0xFFFFFFFFFFFF) + b"x" * 40)], []),
                               "declares 281474976710655 bytes")
    c["trunc_in_string_length"] = (gguf([kv_str(b"general.name", b"abc")], [])[:24 + 8 + 12 + 4 + 5],
                                   "ends in kv 0 'general.name' (string value at offset 48: 8 bytes needed")
    c["bool_value_2"] = (gguf([kv(b"tokenizer.ggml.add_bos_token", BOOL, b"\x02" + b"\0" * 15)], []),
                         "bool value 2")
    c["bool_value_ff"] = (gguf([kv(b"b", BOOL, b"\xff" + b"\0" * 15)], []), "bool value 255")
    c["trunc_in_f64_value"] = (gguf([kv(b"f", F64, struct.pack("<d", 1.5))], [])[:24 + 9 + 4 + 5],
                               "(float64 at offset")

    # --- arrays ---
    at = kv2 + 8 + len(b"tokenizer.ggml.tokens") + 4   # offset of the element type
    c["trunc_in_array_type"] = (full[:at + 2], "(array element type at offset")
    c["trunc_in_array_count"] = (full[:at + 4 + 3], "(array count at offset")
    c["trunc_in_string_array"] = (gguf([kv(b"t", ARR, arr(STR, 3, s(b"<unk>") + u64(100) + b"x" * 12))], [], align=1),
                                  "string 1 of 3 at offset")
    c["trunc_in_string_array_length"] = (gguf([kv(b"t", ARR, arr(STR, 3, s(b"ab") + s(b"cd") + b"\0" * 4))], [], align=1),
                                         "(string 2 of 3 at offset")
    c["huge_string_array_count"] = (gguf([kv(b"tokenizer.ggml.tokens", ARR, arr(STR, 0xFFFFFFFF, s(b"a") * 50))], []),
                                     "array of 4294967295 strings")
    c["huge_string_array_count_2_63"] = (gguf([kv(b"t", ARR, arr(STR, 1 << 63, s(b"a") * 50))], []),
                                         "array of 9223372036854775808 strings")
    c["string_array_element_too_long"] = (gguf([kv(b"t", ARR, arr(STR, 2, s(b"a") + u64(1 << 40) + b"x" * 40))], []),
                                          "string 1 of 2")
    c["huge_u32_array_count"] = (gguf([kv(b"t", ARR, arr(U32, 1 << 62, u32(1) * 8))], []),
                                 "array of 4611686018427387904 uint32")
    c["huge_f64_array_count_wraps"] = (gguf([kv(b"t", ARR, arr(F64, (1 << 61) + 1, b"\0" * 64))], []),
                                       "array of 2305843009213693953 float64")
    c["trunc_in_i32_array"] = (gguf([kv(b"t", ARR, arr(I32, 10, u32(7) * 10))], [])[:24 + 9 + 4 + 12 + 20],
                               "array of 10 int32")
    c["array_of_arrays"] = (gguf([kv(b"t", ARR, arr(ARR, 1, arr(U8, 1, b"\1") + b"\0" * 8))], []),
                            "array of arrays")
    c["array_unknown_element_type"] = (gguf([kv(b"t", ARR, arr(13, 1, b"\0" * 16))], []),
                                       "unknown array element type 13")
    c["bool_array_element_2"] = (gguf([kv(b"t", ARR, arr(BOOL, 4, b"\1\0\2\1") + b"\0" * 8)], []),
                                 "bool array element 2")

    # --- general.alignment ---
    c["alignment_0"] = (base(kvs=BASE_KVS + [kv_u32(b"general.alignment", 0)]), "alignment 0")
    c["alignment_3"] = (base(kvs=BASE_KVS + [kv_u32(b"general.alignment", 3)]), "alignment 3 at offset")
    c["alignment_not_pow2_48"] = (base(kvs=BASE_KVS + [kv_u32(b"general.alignment", 48)]), "not a power of 2")
    c["alignment_type_u64"] = (base(kvs=BASE_KVS + [kv(b"general.alignment", U64, u64(32))]), "must be uint32")
    c["alignment_type_i32"] = (base(kvs=BASE_KVS + [kv(b"general.alignment", I32, u32(32))]), "must be uint32")
    c["alignment_type_string"] = (base(kvs=BASE_KVS + [kv_str(b"general.alignment", b"32")]), "must be uint32")
    c["alignment_duplicate"] = (base(kvs=BASE_KVS + [kv_u32(b"general.alignment", 32)] * 2), "duplicate key")

    # --- tensor infos ---
    c["trunc_in_tensor_name_length"] = (full[:ti0 + 5], "ends in tensor 0 (tensor name at offset")
    c["trunc_in_tensor_name"] = (gguf(BASE_KVS, [ti(b"token_embd.weight", [8], T_F32, 0)])[:o["tis"] + 8 + 4],
                                 "tensor name at offset")
    c["trunc_in_n_dims"] = (full[:ti0 + 9 + 2], "(n_dims at offset")
    c["trunc_in_ne"] = (full[:ti0 + 9 + 4 + 4], "(ne at offset")
    c["trunc_in_tensor_type"] = (full[:ti0 + 9 + 4 + 8 + 1], "(tensor type at offset")
    c["trunc_in_tensor_offset"] = (full[:ti0 + 9 + 4 + 8 + 4 + 7], "(tensor offset at offset")
    c["trunc_in_second_tensor_info"] = (full[:o["ti1"] + 10], "tensor 1")
    c["tensor_name_empty"] = (base(tis=[ti(b"", [8], T_F32, 0)]), "tensor name at offset")
    c["tensor_name_not_utf8"] = (base(tis=[ti(b"blk.\x80.w", [8], T_F32, 0)]), "not valid UTF-8")
    c["duplicate_tensor_name"] = (base(tis=[ti(b"a", [8], T_F32, 0), ti(b"a", [8], T_F32, 32)]),
                                  "duplicate tensor name")
    c["n_dims_0"] = (base(tis=[s(b"a") + u32(0) + u32(T_F32) + u64(0) + u64(0)]), "n_dims 0")
    c["n_dims_5"] = (base(tis=[ti(b"a", [8, 1, 1, 1, 1], T_F32, 0)]), "n_dims 5")
    c["n_dims_u32max"] = (base(tis=[s(b"a") + u32(0xFFFFFFFF) + u64(8) * 5]), "n_dims 4294967295")
    c["ne_negative"] = (base(tis=[ti(b"a", [8, -1], T_F32, 0)]), "is negative")
    c["ne_negative_min"] = (base(tis=[ti(b"a", [1 << 63], T_F32, 0)]), "is negative")
    c["ne_product_overflow"] = (base(tis=[ti(b"a", [1 << 32, 1 << 32], T_F32, 0)]), "element count")
    c["ne_product_overflow_4d"] = (base(tis=[ti(b"a", [1 << 16] * 4, T_F32, 0)]), "element count")
    c["ne_product_overflow_with_zero"] = (base(tis=[ti(b"a", [1 << 40, 1 << 40, 0], T_F32, 0)]), "element count")
    c["nbytes_overflow"] = (base(tis=[ti(b"a", [1 << 61, 2], T_F32, 0)]), "byte size")
    c["ne0_not_multiple_of_block"] = (base(tis=[ti(b"b", [33], T_Q8_0, 0)]), "not a multiple of the Q8_0 block size 32")
    c["ne0_not_multiple_of_k_block"] = (base(tis=[ti(b"k", [128], T_Q4_K, 0)]), "Q4_K block size 256")
    c["tensor_type_unknown_200"] = (base(tis=[ti(b"a", [8], 200, 0)]), "unsupported tensor type: tensor 0 'a': unknown tensor type 200")
    c["tensor_type_unknown_u32max"] = (base(tis=[ti(b"a", [8], 0xFFFFFFFF, 0)]), "malformed GGUF: tensor 0 'a': unknown tensor type 4294967295")
    c["tensor_type_removed_4"] = (base(tis=[ti(b"a", [8], 4, 0)]), "unsupported tensor type: tensor 0 'a': unknown tensor type 4 ")
    # Types we cannot compute (Q2_K, IQ4_XS) are still size-checked with their
    # real block layout; the files are refused for the layout, not the type.
    c["tensor_q2_k_ne0_not_multiple"] = (base(tis=[ti(b"a", [100], 10, 0)]), "Q2_K block size 256")
    c["tensor_iq4_xs_past_eof"] = (base(tis=[ti(b"a", [256, 64], 23, 0)]), "its tensor data needs 9248")

    # --- tensor data ---
    c["tensor_offset_misaligned"] = (base(tis=[ti(b"a", [8], T_F32, 4)]), "not a multiple of the alignment 32")
    c["tensor_offset_misaligned_64"] = (base(kvs=BASE_KVS + [kv_u32(b"general.alignment", 64)],
                                             tis=[ti(b"a", [8], T_F32, 32)], align=64),
                                        "not a multiple of the alignment 64")
    c["tensor_past_eof"] = (base(tis=[ti(b"a", [8], T_F32, 1024)]), "its tensor data needs 1568")
    c["tensor_offset_wraps"] = (base(tis=[ti(b"a", [8], T_F32, (1 << 64) - 32)]), "overflows 64 bits")
    c["tensor_too_big_for_file"] = (base(tis=[ti(b"a", [8, 1 << 20], T_F32, 0)]), "its tensor data needs 33554976")
    c["trunc_in_tensor_data"] = (full[:o["data"] + 40], "tensor 1 'b' at 608 + 34 bytes is the first past the end")
    c["trunc_before_data_section"] = (full[:o["end_tis"] + 3], "its tensor data needs 642")
    c["tensors_overlap"] = (base(tis=[ti(b"a", [16], T_F32, 0), ti(b"b", [16], T_F32, 32)]), "overlaps")
    c["tensors_same_offset"] = (base(tis=[ti(b"a", [8], T_F32, 0), ti(b"b", [8], T_F32, 0)]), "overlaps")
    c["tensors_nested"] = (base(tis=[ti(b"a", [24], T_F32, 0), ti(b"b", [4], T_F32, 32), ti(b"c", [1], T_F32, 64)]),
                           "overlaps")
    return c


def main():
    OUTDIR.mkdir(exist_ok=True)
    for f in OUTDIR.glob("*.gguf"):
        if not f.name.startswith("fuzz_"):
            f.unlink()
    lines = []
    for name, (blob, expect) in sorted(cases().items()):
        assert len(blob) < 4096, name
        (OUTDIR / f"{name}.gguf").write_bytes(blob)
        lines.append(f"{name}.gguf\t{expect}")
    for name, expect in sorted(FUZZ_FOUND.items()):
        assert (OUTDIR / name).exists(), name
        lines.append(f"{name}\t{expect}")
    MANIFEST.write_text("# generated by gen_hostile.py: file<TAB>substring of the expected error\n"
                        + "\n".join(lines) + "\n")
    print(f"{len(lines)} hostile files in {OUTDIR}")


if __name__ == "__main__":
    main()
