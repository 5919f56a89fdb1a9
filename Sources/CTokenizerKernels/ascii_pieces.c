#include "CTokenizerKernels.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/// Per-byte class masks of 64 bytes: bit j for byte j.
typedef struct {
    uint64_t high, letter, digit, space, blank;
} classes64;

#if defined(__SSE2__)
static inline classes64 classify(const uint8_t *q) {
    classes64 c = {0, 0, 0, 0, 0};
    for (int k = 0; k < 4; k++) {
        __m128i x = _mm_loadu_si128((const __m128i *)(q + 16 * k));
        // Signed compares are exact for bytes below 0x80; a block with any other byte is refused.
        __m128i folded = _mm_or_si128(x, _mm_set1_epi8(0x20));
        __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(folded, _mm_set1_epi8(0x60)), _mm_cmplt_epi8(folded, _mm_set1_epi8(0x7B)));
        __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(0x2F)), _mm_cmplt_epi8(x, _mm_set1_epi8(0x3A)));
        __m128i blank = _mm_cmpeq_epi8(x, _mm_set1_epi8(0x20));
        __m128i control = _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(0x08)), _mm_cmplt_epi8(x, _mm_set1_epi8(0x0E)));
        unsigned shift = 16u * (unsigned)k;
        c.high |= (uint64_t)(uint32_t)_mm_movemask_epi8(x) << shift;
        c.letter |= (uint64_t)(uint32_t)_mm_movemask_epi8(letter) << shift;
        c.digit |= (uint64_t)(uint32_t)_mm_movemask_epi8(digit) << shift;
        c.blank |= (uint64_t)(uint32_t)_mm_movemask_epi8(blank) << shift;
        c.space |= (uint64_t)(uint32_t)_mm_movemask_epi8(_mm_or_si128(control, blank)) << shift;
    }
    return c;
}
#else
static inline classes64 classify(const uint8_t *q) {
    classes64 c = {0, 0, 0, 0, 0};
    for (int j = 0; j < 64; j++) {
        uint8_t b = q[j], folded = (uint8_t)(b | 0x20);
        uint64_t bit = 1ull << j;
        if (b >= 0x80) c.high |= bit;
        if (folded >= 0x61 && folded <= 0x7A) c.letter |= bit;
        if (b >= 0x30 && b <= 0x39) c.digit |= bit;
        if (b == 0x20) c.blank |= bit;
        if ((b >= 0x09 && b <= 0x0D) || b == 0x20) c.space |= bit;
    }
    return c;
}
#endif

size_t axon_ascii_piece_starts(const uint8_t *p, size_t max_blocks, uint32_t *prev, uint64_t *starts) {
    uint32_t before = *prev;
    size_t k = 0;
    for (; k < max_blocks; k++) {
        const uint8_t *q = p + 64 * k;
        uint8_t after = q[64];
        if (after >= 0x80) break;
        classes64 c = classify(q);
        if (c.high) break;
        uint64_t other = ~(c.letter | c.digit | c.space);
        // The class of the byte before each byte, and whether the byte after each is whitespace.
        uint64_t prevLetter = c.letter << 1 | (before & AXON_PIECE_PREV_LETTER ? 1 : 0);
        uint64_t prevDigit = c.digit << 1 | (before & AXON_PIECE_PREV_DIGIT ? 1 : 0);
        uint64_t prevOther = other << 1 | (before & AXON_PIECE_PREV_OTHER ? 1 : 0);
        uint64_t prevSpace = c.space << 1 | (before & AXON_PIECE_PREV_SPACE ? 1 : 0);
        uint64_t prevBlank = c.blank << 1 | (before & AXON_PIECE_PREV_BLANK ? 1 : 0);
        uint64_t afterSpace = (after >= 0x09 && after <= 0x0D) || after == 0x20;
        uint64_t nextSpace = c.space >> 1 | afterSpace << 63;
        uint64_t runs = (c.letter & ~prevLetter) | (c.digit & ~prevDigit) | (other & ~prevOther);
        starts[k] = (runs & ~prevBlank) | (c.space & ~prevSpace) | (c.space & ~nextSpace);
        before = (uint32_t)(c.letter >> 63) * AXON_PIECE_PREV_LETTER | (uint32_t)(c.digit >> 63) * AXON_PIECE_PREV_DIGIT
            | (uint32_t)(other >> 63) * AXON_PIECE_PREV_OTHER | (uint32_t)(c.space >> 63) * AXON_PIECE_PREV_SPACE
            | (uint32_t)(c.blank >> 63) * AXON_PIECE_PREV_BLANK;
    }
    *prev = before;
    return k;
}
