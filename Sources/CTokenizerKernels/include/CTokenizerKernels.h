#ifndef AXON_CTOKENIZERKERNELS_H
#define AXON_CTOKENIZERKERNELS_H

#include <stddef.h>
#include <stdint.h>

// The GPT-2 split rule's piece starts over ASCII text, 64 bytes per 64-bit mask (SSE2, or plain
// C elsewhere). Wrapped by the Tokenizer module's encoder (Tokenizer.encodeBlocks): call from there.
//
// The local rules, valid from any piece boundary on ASCII text:
// - a run of letters, of digits or of other characters starts a piece, unless the byte before it
//   is a space (0x20), which then starts the piece instead (` ?X+`);
// - a whitespace run starts a piece, and so does its last character when a non-whitespace
//   character follows (`\s+(?!\S)` leaves it: a space joins what follows, anything else is `\s+`
//   on its own).
// Contractions (`'s`, `'re`, ...) are the caller's: they are the one rule that is not local.

/// Class bits of the byte before the next block: set by one call for the next.
#define AXON_PIECE_PREV_LETTER 1u
#define AXON_PIECE_PREV_DIGIT 2u
#define AXON_PIECE_PREV_OTHER 4u
#define AXON_PIECE_PREV_SPACE 8u
#define AXON_PIECE_PREV_BLANK 16u

/// For blocks k = 0, 1, ... of p (64 bytes each) while k < max_blocks and the block's 64 bytes and
/// the byte after it are ASCII: starts[k] bit j set means the local rules start a piece at
/// p[64k + j]. *prev holds the classes of p[-1] on entry (0 when unknown: the caller then ignores
/// bit 0) and of the last block's last byte on return. p[64 * max_blocks] must be readable.
/// Returns the number of blocks written.
size_t axon_ascii_piece_starts(const uint8_t *p, size_t max_blocks, uint32_t *prev, uint64_t *starts);

#endif
