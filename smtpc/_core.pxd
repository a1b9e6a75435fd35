cimport cython
from cpython.object cimport PyObject

# Layouts of the compiled core's classes and its compile-time sizes.

cdef enum:
    # The emitter buffer lives inside the Emitter object up to this size.
    _DEFAULT_BUFFER_SIZE = 256
    _MIN_BUFFER_SIZE = 64
    _MAX_COMMAND_LINE = 512   # RFC 5321 §4.5.3.1.4, including CRLF
    _MAX_LOCAL_PART = 64      # RFC 5321 §4.5.3.1.1
    _MAX_DOMAIN = 255         # RFC 5321 §4.5.3.1.2
    _MAX_PATH = 256           # RFC 5321 §4.5.3.1.3, including the angle brackets


# Dot-stuffing state between two chunks of message content; C code reads it.
cdef extern from *:
    """
    typedef struct {
        int at_line_start;  /* the next input octet begins a line */
        int skip_lf;        /* a chunk ended in CR, already written as CRLF */
        int keep_dots;      /* line endings only: no dot-stuffing (BDAT) */
    } smtpc_stuff_state;
    """
    ctypedef struct StuffState "smtpc_stuff_state":
        bint at_line_start
        bint skip_lf
        bint keep_dots


@cython.final
cdef class DataEncoder:
    cdef StuffState _state


@cython.final
cdef class LineEncoder:
    cdef StuffState _state


@cython.final
cdef class Emitter:
    cdef object _sink
    cdef object _heap           # a bytearray when the buffer is larger
    cdef char *_buf             # _inline, or the bytearray's memory
    cdef Py_ssize_t _size
    cdef Py_ssize_t _pos        # octets queued in the buffer
    cdef StuffState _data
    cdef char _inline[_DEFAULT_BUFFER_SIZE]

    cdef int _put(self, const char *src, Py_ssize_t n) except -1
    cdef int _write(self, object data, const char *src, Py_ssize_t n) except -1
    cdef int _send(self, object data) except -1
