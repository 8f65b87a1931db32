/* What the two files of the C speedup share (see _speedups.c). */

#ifndef TRIO_WS_SPEEDUPS_H
#define TRIO_WS_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* out[i] = in[i] ^ m[(i + phase) & 3] for i < n (out may be in). */
static inline void
xor_mask(unsigned char *out, const unsigned char *in, Py_ssize_t n, const unsigned char *m, Py_ssize_t phase)
{
    Py_ssize_t i = 0;
    uint64_t key;
    unsigned char key_bytes[8];

    for (int j = 0; j < 8; j++) {
        key_bytes[j] = m[(j + phase) & 3];
    }
    memcpy(&key, key_bytes, 8);
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, in + i, 8);
        word ^= key;
        memcpy(out + i, &word, 8);
    }
    for (; i < n; i++) {
        out[i] = in[i] ^ m[(i + phase) & 3];
    }
}

PyObject *parse_messages(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
int parse_messages_init(void);

#endif
