/* parse_messages of the C speedup (see _speedups.c): the receiving side's common case. */

#include "_speedups.h"

static PyObject *str_data; /* "data", interned */

/* An instance of the frozen attrs class ``type`` (one slot, ``data``) holding ``value``: what its
 * __init__ does (object.__setattr__), without the call. */
static PyObject *
make_event(PyObject *type, PyObject *value)
{
    PyTypeObject *tp = (PyTypeObject *)type;
    PyObject *event = tp->tp_alloc(tp, 0);

    if (event != NULL && PyObject_GenericSetAttr(event, str_data, value) < 0) {
        Py_CLEAR(event);
    }
    return event;
}

/* parse_messages(buf, pos, masked, limit, events, text_type, bytes_type) -> (pos, count, size):
 * from ``pos`` on, each whole frame that is a message of its own (FIN set, no reserved bit, text
 * or binary, masked as ``masked`` says, at most ``limit`` bytes: None for no limit, text valid
 * UTF-8) is appended to ``events`` as text_type(str) or bytes_type(bytes). Stops at the first
 * frame that is anything else, or incomplete, and leaves it to the caller; returns where it
 * stopped, how many messages it made and their payload bytes. */
PyObject *
parse_messages(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t pos, limit = PY_SSIZE_T_MAX, count = 0, size = 0;
    int masked;
    PyObject *result = NULL;

    if (nargs != 7 || !PyList_Check(args[4]) || !PyType_Check(args[5]) || !PyType_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError,
                        "parse_messages(buf, pos, masked, limit, events: list, text_type, bytes_type)");
        return NULL;
    }
    pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    masked = PyObject_IsTrue(args[2]);
    if (masked < 0) {
        return NULL;
    }
    if (args[3] != Py_None) {
        limit = PyLong_AsSsize_t(args[3]);
        if (limit == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (pos < 0 || pos > view.len) {
        PyErr_SetString(PyExc_ValueError, "pos out of range");
        goto done;
    }
    {
        const unsigned char *p = (const unsigned char *)view.buf;
        Py_ssize_t n = view.len;
        unsigned char small[512];

        while (n - pos >= 2) {
            unsigned b0 = p[pos], b1 = p[pos + 1], opcode = b0 & 0x0F;
            Py_ssize_t hlen = 2, len;
            uint64_t length = b1 & 0x7F;
            const unsigned char *mask = NULL, *payload;
            PyObject *value, *event;
            int appended;

            if ((b0 & 0xF0) != 0x80 || (opcode != 1 && opcode != 2) || ((b1 & 0x80) != 0) != masked) {
                break;
            }
            if (length == 126) {
                if (n - pos < 4) {
                    break;
                }
                length = ((uint64_t)p[pos + 2] << 8) | p[pos + 3];
                hlen = 4;
            }
            else if (length == 127) {
                if (n - pos < 10) {
                    break;
                }
                length = 0;
                for (int i = 0; i < 8; i++) {
                    length = (length << 8) | p[pos + 2 + i];
                }
                hlen = 10;
            }
            if (length > (uint64_t)limit) {
                break;
            }
            if (masked) {
                if (n - pos < hlen + 4) {
                    break;
                }
                mask = p + pos + hlen;
                hlen += 4;
            }
            if ((uint64_t)(n - pos - hlen) < length) {
                break;
            }
            len = (Py_ssize_t)length;
            payload = p + pos + hlen;
            if (opcode == 2) {
                value = PyBytes_FromStringAndSize(NULL, len);
                if (value == NULL) {
                    goto done;
                }
                if (mask != NULL) {
                    xor_mask((unsigned char *)PyBytes_AS_STRING(value), payload, len, mask, 0);
                }
                else {
                    memcpy(PyBytes_AS_STRING(value), payload, len);
                }
            }
            else {
                unsigned char *text = (unsigned char *)payload;
                if (mask != NULL) {
                    text = len <= (Py_ssize_t)sizeof small ? small : PyMem_Malloc(len);
                    if (text == NULL) {
                        PyErr_NoMemory();
                        goto done;
                    }
                    xor_mask(text, payload, len, mask, 0);
                }
                value = PyUnicode_DecodeUTF8((const char *)text, len, NULL);
                if (text != small && text != payload) {
                    PyMem_Free(text);
                }
                if (value == NULL) {
                    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                        goto done;
                    }
                    PyErr_Clear(); /* the caller fails the connection (1007) */
                    break;
                }
            }
            event = make_event(opcode == 1 ? args[5] : args[6], value);
            Py_DECREF(value);
            if (event == NULL) {
                goto done;
            }
            appended = PyList_Append(args[4], event);
            Py_DECREF(event);
            if (appended < 0) {
                goto done;
            }
            pos += hlen + len;
            count++;
            size += len;
        }
    }
    result = Py_BuildValue("nnn", pos, count, size);
done:
    PyBuffer_Release(&view);
    return result;
}

int
parse_messages_init(void)
{
    str_data = PyUnicode_InternFromString("data");
    return str_data == NULL ? -1 : 0;
}
