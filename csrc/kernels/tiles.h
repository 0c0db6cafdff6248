/* tiles.h — the AMX tile configuration (palette 1) as the architecture lays it out in its 64 bytes,
 * for the tile kernels (q32_amx.c) and the tile peak (peak.c). */
#ifndef RWKV_TILES_H
#define RWKV_TILES_H

#include <stdint.h>
#include <string.h>

struct rwkv_tilecfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16]; /* bytes per row of tile n */
    uint8_t rows[16];
};

/* A palette-1 configuration with every tile unused. */
static inline void rwkv_tilecfg_init(struct rwkv_tilecfg *c) {
    memset(c, 0, sizeof *c);
    c->palette = 1;
}

static inline void rwkv_tile_shape(struct rwkv_tilecfg *c, int n, int rows, int colsb) {
    c->rows[n] = (uint8_t)rows;
    c->colsb[n] = (uint16_t)colsb;
}

#endif
