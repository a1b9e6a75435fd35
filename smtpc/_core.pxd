# Layouts of the compiled core's classes and its compile-time sizes.

cdef enum:
    # The emitter buffer lives inside the Emitter object up to this size.
    _DEFAULT_BUFFER_SIZE = 256
    _MIN_BUFFER_SIZE = 64
    _MAX_COMMAND_LINE = 512   # RFC 5321 §4.5.3.1.4, including CRLF
    _MAX_LOCAL_PART = 64      # RFC 5321 §4.5.3.1.1
    _MAX_DOMAIN = 255         # RFC 5321 §4.5.3.1.2
    _MAX_PATH = 256           # RFC 5321 §4.5.3.1.3, including the angle brackets
    # Most pieces handed to the sink in one call; well under IOV_MAX, so a
    # sendmsg() sink sends them in one system call.
    _MAX_PIECES = 64
    # Buffered octets up to this many go to the sink as a bytes copy.
    _SMALL_PIECE = 16
    # Chunks of message content from this size on are encoded whole.
    _WHOLE_CHUNK = 4096


# Dot-stuffing state between two chunks of message content.
cdef struct StuffState:
    bint at_line_start   # the next input byte begins a line
    bint skip_lf         # a chunk ended in CR, already written as CRLF
    bint keep_dots       # line endings only: no dot-stuffing (BDAT)


cdef class DataEncoder:
    cdef StuffState _state


cdef class LineEncoder:
    cdef StuffState _state


cdef class Emitter:
    cdef object _sink
    cdef list _pieces           # queued for the sink, or None when empty
    cdef char *_buf             # _inline, or heap memory above the default size
    cdef Py_ssize_t _size
    cdef Py_ssize_t _pos        # octets written to the buffer
    cdef Py_ssize_t _mark       # octets of the buffer already in _pieces
    cdef Py_ssize_t _zero_copy  # shortest input run sent without a copy
    cdef StuffState _data
    cdef char _inline[_DEFAULT_BUFFER_SIZE]

    cdef int _put(self, const char *src, Py_ssize_t n) except -1
    cdef int _put_slow(self, const char *src, Py_ssize_t n) except -1
    cdef int _append(self, object piece) except -1
    cdef int _queue_input(self, const char *src, Py_ssize_t n) except -1
    cdef int _queue_buffered(self) except -1
    cdef int _flush(self) except -1
