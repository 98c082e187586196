/* float_tiles.h - what the x86 levels' tile kernels (gemm) for the float weight types
 * share: the weight type a tile reads, the three gemm entry points over one function of
 * that type, and the walk over tiles of up to FT_RM rows by FT_TM tokens. Included by
 * quants_avx2.c, quants_avx512.c and quants_avx512_bf16.c, each compiled for its own
 * instruction set. Private. */
#ifndef LLM_CPU_FLOAT_TILES_H
#define LLM_CPU_FLOAT_TILES_H

enum { FT_F32, FT_F16, FT_BF16 };

#define FT_RM 4 /* weight rows per tile (the 512-bit kernels) */
#define FT_TM 3 /* tokens per tile */

/* gemm_f32, gemm_f16 and gemm_bf16 (llm_gemm_fn), each FN(FT_..., the gemm's arguments) */
#define FT_DEFINE_GEMMS(FN)                                                                 \
    static void gemm_f32(int64_t n, float *s, size_t bs, const void *x, size_t bx,         \
                         const void *y, size_t by, int64_t nr, int64_t nc)                 \
    {                                                                                       \
        FN(FT_F32, n, s, bs, x, bx, y, by, nr, nc);                                         \
    }                                                                                       \
    static void gemm_f16(int64_t n, float *s, size_t bs, const void *x, size_t bx,         \
                         const void *y, size_t by, int64_t nr, int64_t nc)                 \
    {                                                                                       \
        FN(FT_F16, n, s, bs, x, bx, y, by, nr, nc);                                         \
    }                                                                                       \
    static void gemm_bf16(int64_t n, float *s, size_t bs, const void *x, size_t bx,        \
                          const void *y, size_t by, int64_t nr, int64_t nc)                \
    {                                                                                       \
        FN(FT_BF16, n, s, bs, x, bx, y, by, nr, nc);                                        \
    }

/* The nr x nc product in tiles of up to FT_RM rows by FT_TM tokens, token-major (a tile's
 * activations stay in L1 while the rows pass): TILE(R, T, o, xr, yc) with R and T
 * constants, so that the tile's loops unroll into registers; o, xr and yc are the tile's
 * first output, weight row and activation row. */
#define FT_FOR_TILES(s, bs, x, bx, y, by, nr, nc, TILE)                                     \
    for (int64_t ft_c = 0; ft_c < (nc); ft_c += FT_TM) {                                    \
        const int ft_t = (nc) - ft_c >= FT_TM ? FT_TM : (int)((nc) - ft_c);                 \
        for (int64_t ft_r = 0; ft_r < (nr); ft_r += FT_RM) {                                \
            const int ft_n = (nr) - ft_r >= FT_RM ? FT_RM : (int)((nr) - ft_r);             \
            float *const o = (s) + (size_t)ft_c * (bs) + (size_t)ft_r;                      \
            const char *const xr = (const char *)(x) + (size_t)ft_r * (bx);                 \
            const char *const yc = (const char *)(y) + (size_t)ft_c * (by);                 \
            switch (ft_n * 8 + ft_t) {                                                      \
            case 4 * 8 + 3: TILE(4, 3, o, xr, yc); break;                                   \
            case 4 * 8 + 2: TILE(4, 2, o, xr, yc); break;                                   \
            case 4 * 8 + 1: TILE(4, 1, o, xr, yc); break;                                   \
            case 3 * 8 + 3: TILE(3, 3, o, xr, yc); break;                                   \
            case 3 * 8 + 2: TILE(3, 2, o, xr, yc); break;                                   \
            case 3 * 8 + 1: TILE(3, 1, o, xr, yc); break;                                   \
            case 2 * 8 + 3: TILE(2, 3, o, xr, yc); break;                                   \
            case 2 * 8 + 2: TILE(2, 2, o, xr, yc); break;                                   \
            case 2 * 8 + 1: TILE(2, 1, o, xr, yc); break;                                   \
            case 1 * 8 + 3: TILE(1, 3, o, xr, yc); break;                                   \
            case 1 * 8 + 2: TILE(1, 2, o, xr, yc); break;                                   \
            default: TILE(1, 1, o, xr, yc); break;                                          \
            }                                                                               \
        }                                                                                   \
    }

#endif
