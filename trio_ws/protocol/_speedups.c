/* Optional C speedups of the sans-I/O core (RFC 6455 §5.3 masking):
 *
 * - apply_mask(data, mask): a new bytes object, data XOR the repeated 4-byte mask;
 * - PayloadBuffer(size): a frame payload of known size gathered from the reads it arrives in,
 *   unmasked on the way in, and handed over as one bytes object without a final join;
 * - parse_messages(...): the run of whole one-frame data messages at the start of a buffer, the
 *   common case of the receiving side (RFC 6455 §5.2, §5.6), made into message events at once.
 *
 * trio_ws/protocol/_frames.py falls back to pure Python when this module was not built (and to
 * joining pieces when it was built without PayloadBuffer). */

#include "_speedups.h"

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    PyObject *result = NULL;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_mask(data, mask) takes 2 arguments");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "the mask must be 4 bytes long");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL) {
        goto done;
    }
    xor_mask((unsigned char *)PyBytes_AS_STRING(result), (const unsigned char *)data.buf, data.len,
             (const unsigned char *)mask.buf, 0);
done:
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

/* ------------------------------------------------------------------ PayloadBuffer */

/* The first allocation: what arrived, at least this much (and never more than the payload). */
#define FIRST_CAPACITY 65536

typedef struct {
    PyObject_HEAD
    PyObject *data;     /* the bytes being filled (nobody else holds it), or NULL */
    Py_ssize_t size;    /* the payload's length */
    Py_ssize_t filled;  /* bytes added so far */
    Py_ssize_t capacity;
} PayloadBuffer;

static int
PayloadBuffer_init(PayloadBuffer *self, PyObject *args, PyObject *kwds)
{
    Py_ssize_t size;
    static char *kwlist[] = {"size", NULL};

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n", kwlist, &size)) {
        return -1;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        return -1;
    }
    Py_CLEAR(self->data);
    self->size = size;
    self->filled = 0;
    self->capacity = 0;
    return 0;
}

static void
PayloadBuffer_dealloc(PayloadBuffer *self)
{
    Py_CLEAR(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* add(data, mask): append data, XOR the mask (or as it is, mask None), the mask's phase following
 * the bytes added so far. Memory grows with what arrives (doubling), never past the payload. */
static PyObject *
PayloadBuffer_add(PayloadBuffer *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    PyObject *result = NULL;
    int masked;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "add(data, mask) takes 2 arguments");
        return NULL;
    }
    masked = args[1] != Py_None;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (masked && PyObject_GetBuffer(args[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (masked && mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "the mask must be 4 bytes long");
        goto done;
    }
    if (data.len > self->size - self->filled) {
        PyErr_SetString(PyExc_ValueError, "more data than the payload's size");
        goto done;
    }
    if (self->filled + data.len > self->capacity) {
        Py_ssize_t want = self->filled + data.len, capacity = self->capacity * 2;
        if (capacity < FIRST_CAPACITY) {
            capacity = FIRST_CAPACITY;
        }
        if (capacity < want) {
            capacity = want;
        }
        if (capacity > self->size) {
            capacity = self->size;
        }
        if (self->data == NULL) {
            self->data = PyBytes_FromStringAndSize(NULL, capacity);
            if (self->data == NULL) {
                goto done;
            }
        }
        else if (_PyBytes_Resize(&self->data, capacity) < 0) {
            self->filled = self->capacity = 0; /* (the resize dropped the object) */
            goto done;
        }
        self->capacity = capacity;
    }
    {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(self->data) + self->filled;
        if (masked) {
            xor_mask(out, (const unsigned char *)data.buf, data.len, (const unsigned char *)mask.buf,
                     self->filled & 3);
        }
        else {
            memcpy(out, data.buf, data.len);
        }
    }
    self->filled += data.len;
    result = Py_None;
    Py_INCREF(result);
done:
    if (masked) {
        PyBuffer_Release(&mask);
    }
    PyBuffer_Release(&data);
    return result;
}

/* take(): the whole payload, once every byte was added; the buffer is then empty. */
static PyObject *
PayloadBuffer_take(PayloadBuffer *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *result;

    if (self->filled != self->size) {
        PyErr_SetString(PyExc_ValueError, "the payload is not complete");
        return NULL;
    }
    if (self->data == NULL) {
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    result = self->data;
    self->data = NULL;
    self->filled = self->capacity = self->size = 0;
    return result;
}

static PyObject *
PayloadBuffer_get_filled(PayloadBuffer *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->filled);
}

static PyObject *
PayloadBuffer_get_capacity(PayloadBuffer *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->capacity);
}

static PyMethodDef PayloadBuffer_methods[] = {
    {"add", (PyCFunction)(void (*)(void))PayloadBuffer_add, METH_FASTCALL,
     "add(data, mask): append data, unmasked with mask (None: as it is)."},
    {"take", (PyCFunction)PayloadBuffer_take, METH_NOARGS,
     "take() -> bytes: the whole payload, once complete."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef PayloadBuffer_getset[] = {
    {"filled", (getter)PayloadBuffer_get_filled, NULL, "bytes added so far", NULL},
    {"capacity", (getter)PayloadBuffer_get_capacity, NULL, "bytes allocated now", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PayloadBufferType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "trio_ws.protocol._speedups.PayloadBuffer",
    .tp_doc = "PayloadBuffer(size): a payload of size bytes gathered from pieces, unmasked.",
    .tp_basicsize = sizeof(PayloadBuffer),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)PayloadBuffer_init,
    .tp_dealloc = (destructor)PayloadBuffer_dealloc,
    .tp_methods = PayloadBuffer_methods,
    .tp_getset = PayloadBuffer_getset,
};

/* ------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, mask) -> bytes: XOR data with the repeated 4-byte mask."},
    {"parse_messages", (PyCFunction)(void (*)(void))parse_messages, METH_FASTCALL,
     "parse_messages(buf, pos, masked, limit, events, text_type, bytes_type) -> (pos, count, size)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "trio_ws.protocol._speedups", NULL, 0, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *m;

    if (PyType_Ready(&PayloadBufferType) < 0) {
        return NULL;
    }
    if (parse_messages_init() < 0) {
        return NULL;
    }
    m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&PayloadBufferType);
    if (PyModule_AddObject(m, "PayloadBuffer", (PyObject *)&PayloadBufferType) < 0) {
        Py_DECREF(&PayloadBufferType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
