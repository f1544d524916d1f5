/*
 * pyzram._kcodec's C entry points, for compiled callers.
 *
 * compress_into() and decompress_into() are, in Python, thin functions that
 * unbox their arguments and call two C functions; the module also exports
 * those two in a capsule (pyzram._kcodec._C_API), and this header is how
 * compiled code reaches them: zcomp's ``kc_compress_into`` and
 * ``kc_decompress_into`` are these, so that a page's codec call is a C call
 * with its offsets and lengths as C integers (run interpreted, the same
 * source calls the Python functions).  Both return -1 with an exception set
 * on bad arguments; decompress_into returns 0 or -EINVAL otherwise, and
 * compress_into the compressed length.
 *
 * kcodec.c includes this header for the table's type; other translation
 * units get the two inline callers, which import the capsule on first use.
 */
#ifndef PYZRAM_KCODEC_CAPI_H
#define PYZRAM_KCODEC_CAPI_H

#include <Python.h>

#define KC_CAPI_NAME "pyzram._kcodec._C_API"
#define KC_CAPI_VERSION 1

typedef struct {
    int version;
    Py_ssize_t (*compress_into)(int algo, PyObject *page, PyObject *dst, PyObject *accel,
                                PyObject *dict);
    int (*decompress_into)(int algo, PyObject *src, Py_ssize_t off, Py_ssize_t len,
                           PyObject *page, PyObject *dict);
} kc_capi_t;

#ifndef PYZRAM_KCODEC_MODULE
static const kc_capi_t *kc_capi_table;

static inline const kc_capi_t *kc_capi_import(void)
{
    const kc_capi_t *t = (const kc_capi_t *)PyCapsule_Import(KC_CAPI_NAME, 0);
    if (t != NULL && t->version != KC_CAPI_VERSION) {
        PyErr_Format(PyExc_ImportError, "%s: version %d, not %d", KC_CAPI_NAME, t->version,
                     KC_CAPI_VERSION);
        return NULL;
    }
    return kc_capi_table = t;
}

static inline Py_ssize_t kc_capi_compress_into(int algo, PyObject *page, PyObject *dst,
                                               PyObject *accel, PyObject *dict)
{
    const kc_capi_t *t = kc_capi_table ? kc_capi_table : kc_capi_import();
    return t ? t->compress_into(algo, page, dst, accel, dict) : -1;
}

static inline int kc_capi_decompress_into(int algo, PyObject *src, Py_ssize_t off,
                                          Py_ssize_t len, PyObject *page, PyObject *dict)
{
    const kc_capi_t *t = kc_capi_table ? kc_capi_table : kc_capi_import();
    return t ? t->decompress_into(algo, src, off, len, page, dict) : -1;
}
#endif

#endif
