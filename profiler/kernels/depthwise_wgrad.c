/* Weight gradient of a depthwise 3D convolution, channels-last-3d float32 tensors (e3d, profiler/convgrad.py).
 *
 *   dw[c, a, b, d] = sum over n, to, ho, wo of  x[n, to*st + a - pt, ho*sh + b - ph, wo*sw + d - pw, c] * g[n, to, ho, wo, c]
 *
 * with out-of-range input positions counting as zero (the convolution's zero padding). x is (N, T, H, W, C)
 * and g (N, To, Ho, Wo, C) in memory, channels innermost; dw is (C, KT, KH, KW). Channels [c0, c1) are
 * computed, VL at a time as one vector (below), so that threads may split the channels between them; a channel's
 * result depends neither on that split nor on VL (each vector lane is one channel's own sum). Only layers of fewer
 * than VL channels take the scalar path. Each output row contributes a partial sum that is then added to the
 * channel's total, which keeps the float32 rounding error of long sums small.
 */
#include <string.h>

/* Channels per vector: the width of the CPU's vector registers (-march=native). A wider vector type is kept
 * in memory between operations: 16 channels on an AVX2-only EPYC ran 1.5-7x slower than 8. */
#if defined(__AVX512F__)
enum { VL = 16 };
#elif defined(__AVX__)
enum { VL = 8 };
#else
enum { VL = 4 };
#endif
typedef float vf __attribute__((vector_size(VL * sizeof(float))));

static inline vf load(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }

/* The output positions o (of n_out) that tap k reads from inside the input: 0 <= o*s + k - p < n_in. */
static void reach(long k, long s, long p, long n_in, long n_out, long *lo, long *hi) {
    long first = p - k, last = n_in - 1 + p - k;
    *lo = first > 0 ? (first + s - 1) / s : 0;
    *hi = last < 0 ? 0 : (last / s + 1 < n_out ? last / s + 1 : n_out);
    if (*hi < *lo) *hi = *lo;
}

/* One output row against one input row, for the KW taps along the width: adds into acc[0..KW). */
static void row(const float *xr, const float *gr, vf *acc, long nc, long C, long W, long Wo, long KW, long sw, long pw) {
    if (KW == 3 && nc == VL) { /* the common case: three taps share each load of g, x loaded once at stride 1 */
        vf s0 = {0}, s1 = {0}, s2 = {0};
#define X(j) ((j) >= 0 && (j) < W ? load(xr + (j) * C) : (vf){0})
        long i = -pw;
        if (sw == 1) {
            vf x0 = X(i), x1 = X(i + 1);
            for (long wo = 0; wo < Wo; wo++, i++) {
                vf x2 = X(i + 2), gv = load(gr + wo * C);
                s0 += x0 * gv; s1 += x1 * gv; s2 += x2 * gv;
                x0 = x1; x1 = x2;
            }
        } else {
            for (long wo = 0; wo < Wo; wo++, i += sw) {
                vf gv = load(gr + wo * C);
                s0 += X(i) * gv; s1 += X(i + 1) * gv; s2 += X(i + 2) * gv;
            }
        }
#undef X
        acc[0] += s0; acc[1] += s1; acc[2] += s2;
        return;
    }
    for (long d = 0; d < KW; d++) {
        long lo, hi;
        reach(d, sw, pw, W, Wo, &lo, &hi);
        vf s = {0};
        for (long wo = lo; wo < hi; wo++)
            if (nc == VL)
                s += load(xr + (wo * sw + d - pw) * C) * load(gr + wo * C);
            else
                for (long c = 0; c < nc; c++) s[c] += xr[(wo * sw + d - pw) * C + c] * gr[wo * C + c];
        acc[d] += s;
    }
}

/* dims: N C T H W, To Ho Wo, KT KH KW, st sh sw, pt ph pw. */
void depthwise_wgrad(const float *x, const float *g, float *dw, const long *dims, long c0, long c1) {
    long N = dims[0], C = dims[1], T = dims[2], H = dims[3], W = dims[4], To = dims[5], Ho = dims[6], Wo = dims[7];
    long KT = dims[8], KH = dims[9], KW = dims[10], st = dims[11], sh = dims[12], sw = dims[13];
    long pt = dims[14], ph = dims[15], pw = dims[16], K = KT * KH * KW;
    vf acc[K];
    for (long start = c0; start < c1; start += VL) {
        /* A last block of fewer than VL channels is computed as the VL channels that end at c1 (reading
         * channels of the block before it), and only its own lanes are written. */
        long nc = c1 - start < VL ? c1 - start : VL, cb = start, skip = 0;
        if (nc < VL && C >= VL) {
            cb = c1 - VL;
            skip = VL - nc;
            nc = VL;
        }
        memset(acc, 0, sizeof acc);
        for (long n = 0; n < N; n++)
            for (long a = 0; a < KT; a++) {
                long tlo, thi;
                reach(a, st, pt, T, To, &tlo, &thi);
                for (long to = tlo; to < thi; to++)
                    for (long b = 0; b < KH; b++) {
                        long hlo, hhi;
                        reach(b, sh, ph, H, Ho, &hlo, &hhi);
                        for (long ho = hlo; ho < hhi; ho++) {
                            const float *xr = x + ((n * T + to * st + a - pt) * H + ho * sh + b - ph) * W * C + cb;
                            const float *gr = g + ((n * To + to) * Ho + ho) * Wo * C + cb;
                            row(xr, gr, acc + (a * KH + b) * KW, nc, C, W, Wo, KW, sw, pw);
                        }
                    }
            }
        for (long c = skip; c < nc; c++)
            for (long k = 0; k < K; k++) dw[(cb + c) * K + k] = acc[k][c];
    }
}

/* Channels per vector in this build (VL). */
long depthwise_wgrad_lanes(void) { return VL; }
