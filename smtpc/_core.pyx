# cython: auto_pickle=False, autotestdict=False, binding=False
# cython: always_allow_keywords=False, cdivision=True
# cython: embedsignature.format=clinic
"""Compiled core: dot-stuffing, the fixed-buffer emitter, command checks, base64.

``smtpc._core_py`` is its pure-Python twin: same names, same bytes, same
exceptions. The loops over message content touch no Python objects, and the
emitter's only Python objects are the memoryviews it hands to the sink.

Code size is part of the design: every entry point on the hot path takes its
arguments as one object or a plain tuple, so that no keyword parsing is
compiled, and each failed check hands its arguments to the twin, which raises
the error with its message. The twins cannot disagree on an error message, and
the compiled core holds no code to format one.
"""

from cpython.buffer cimport PyBUF_READ, PyBuffer_IsContiguous, PyObject_CheckBuffer
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_Check,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
    _PyBytes_Resize,
)
from cpython.memoryview cimport (
    PyMemoryView_FromMemory,
    PyMemoryView_FromObject,
    PyMemoryView_GET_BUFFER,
)
from cpython.object cimport PyObject
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.tuple cimport PyTuple_GET_SIZE
from libc.string cimport memcpy

cimport cython

from smtpc import _core_py as _twin

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
    # Raw-pointer forms, so that the result can be shrunk in place.
    PyObject *_bytes_new "PyBytes_FromStringAndSize" (
        const char *s, Py_ssize_t n) except NULL
    char *_bytes_data "PyBytes_AS_STRING" (PyObject *o) noexcept nogil
    # Plain calls, where Cython would inline its own general code.
    object _call "PyObject_Call" (object f, object args, PyObject *kw)
    object _call_one "PyObject_CallOneArg" (object f, object arg)
    PyObject *_item "PyTuple_GET_ITEM" (object t, Py_ssize_t i) noexcept
    bytearray _bytearray_new "PyByteArray_FromStringAndSize" (
        const char *s, Py_ssize_t n)
    Py_ssize_t _as_size "PyNumber_AsSsize_t" (PyObject *o, PyObject *exc) except? -1
    # Borrowed references, left uncounted.
    bint _is_bytes "PyBytes_Check" (PyObject *o) noexcept
    Py_ssize_t _bytes_len "PyBytes_GET_SIZE" (PyObject *o) noexcept
    char *_bytearray_data "PyByteArray_AS_STRING" (object o) noexcept
    void _set_error "PyErr_SetString" (object kind, const char *text) noexcept

cdef extern from *:
    """
    #ifdef SMTPC_CHECK_INVARIANTS
    #define SMTPC_INVARIANT(x) \\
        do { if (!(x)) Py_FatalError("smtpc._core invariant: " #x); } while (0)
    #else
    #define SMTPC_INVARIANT(x) ((void)0)
    #endif
    """
    void SMTPC_INVARIANT(bint condition) noexcept nogil


DEFAULT_BUFFER_SIZE = _DEFAULT_BUFFER_SIZE
MIN_BUFFER_SIZE = _MIN_BUFFER_SIZE
MAX_COMMAND_LINE = _MAX_COMMAND_LINE
MAX_LOCAL_PART = _MAX_LOCAL_PART
MAX_DOMAIN = _MAX_DOMAIN
MAX_PATH = _MAX_PATH

# Functions that only the twin has: they are off the hot path, and the
# standard library's C code does their work there.
check_argument = _twin.check_argument
b64decode = _twin.b64decode

# The twin's checks, which raise the errors of the compiled core.
cdef object _check_command = _twin._check_command
cdef object _check_path = _twin.check_path
cdef object _check_size = _twin._check_size
cdef object _byte_view = _twin._byte_view
cdef object _b64encode = _twin.b64encode


cdef int _refuse(object check, tuple args) except -1:
    # A check failed here: the twin's raises the error.
    _call(check, args, NULL)
    _set_error(SystemError, b"smtpc._core and smtpc._core_py disagree")
    return -1


cdef object _view(object data, const char **start, Py_ssize_t *length):
    # The contents of a bytes-like object; the result keeps them alive and
    # fixed until it is released. bytes need no view.
    cdef Py_buffer *buffer

    if PyBytes_Check(data):
        start[0] = PyBytes_AS_STRING(data)
        length[0] = PyBytes_GET_SIZE(data)
        return data
    if PyObject_CheckBuffer(data):
        view = PyMemoryView_FromObject(data)
        buffer = PyMemoryView_GET_BUFFER(view)
        if PyBuffer_IsContiguous(buffer, b'C'):
            start[0] = <const char *>buffer.buf
            length[0] = buffer.len
            return view
    _refuse(_byte_view, (data,))


cdef bint _has_line_break(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i

    for i in range(n):
        if s[i] == c'\r' or s[i] == c'\n' or s[i] == 0:
            return True
    return False


def check_path(address):
    """Validate a mailbox for MAIL FROM or RCPT TO, given without angle brackets.

    ``b""`` is allowed: it is the null reverse-path. Raises ValueError for CR,
    LF or NUL, for lengths beyond RFC 5321 §4.5.3.1, and for a control
    character, space or angle bracket; TypeError if it is not bytes.
    """
    cdef const unsigned char *s
    cdef Py_ssize_t n, i, at = -1
    cdef unsigned char c
    cdef bint bad = not PyBytes_Check(address)

    if not bad:
        s = <const unsigned char *>PyBytes_AS_STRING(address)
        n = PyBytes_GET_SIZE(address)
        # The local part ends at the last "@": it may itself hold a quoted "@".
        for i in range(n):
            c = s[i]
            bad |= c <= c' ' or c == 0x7f or c == c'<' or c == c'>'
            if c == c'@':
                at = i
        bad |= (n + 2 > _MAX_PATH or at > _MAX_LOCAL_PART
                or (at >= 0 and n - at - 1 > _MAX_DOMAIN))
    if bad:
        _refuse(_check_path, (address,))


cdef const char *_B64_ALPHABET = (
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def b64encode(data):
    """Encode with the standard alphabet and padding, without a newline.

    RFC 4648 §4. Raises TypeError if ``data`` is not bytes.
    """
    cdef const unsigned char *s
    cdef unsigned char *o
    cdef Py_ssize_t n, i
    cdef unsigned int v
    cdef int k

    if not PyBytes_Check(data):
        _refuse(_b64encode, (data,))
    s = <const unsigned char *>PyBytes_AS_STRING(data)
    n = PyBytes_GET_SIZE(data)
    out = PyBytes_FromStringAndSize(NULL, (n + 2) // 3 * 4)
    o = <unsigned char *>PyBytes_AS_STRING(out)

    # Groups of three octets; a short last group is read as if zero-filled,
    # and its missing characters are padding.
    for i in range(0, n, 3):
        v = s[i] << 16
        if i + 1 < n:
            v |= s[i + 1] << 8
        if i + 2 < n:
            v |= s[i + 2]
        for k in range(4):
            o[k] = _B64_ALPHABET[v >> (18 - 6 * k) & 63]
        o += 4
    if n % 3:
        o[-1] = c'='
        if n % 3 == 1:
            o[-2] = c'='
    return out


# --- Streaming transfer encodings for MIME (RFC 2045 §6.7, §6.8) --------------
#
# Both encoders take content in chunks split anywhere and return what can be
# written so far; finish() returns the rest. The concatenated output is the
# same for every split, and each call returns the same bytes as the twin's.

cdef extern from *:
    """
    static const char smtpc_b64_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char smtpc_hex_digits[] = "0123456789ABCDEF";

    /* Two base64 characters for every 12-bit value: one lookup per half of a
       3-octet group. */
    static unsigned char smtpc_b64_pairs[4096][2];
    /* Octet classes for quoted-printable: 0 literal, 1 escaped as =XX,
       2 space or tab, 3 CR, 4 LF (RFC 2045 §6.7 rules 1-4). */
    static unsigned char smtpc_qp_class[256];

    static void smtpc_mime_tables_init(void)
    {
        int i;
        for (i = 0; i < 4096; i++) {
            smtpc_b64_pairs[i][0] = (unsigned char)smtpc_b64_alphabet[i >> 6];
            smtpc_b64_pairs[i][1] = (unsigned char)smtpc_b64_alphabet[i & 63];
        }
        for (i = 0; i < 256; i++)
            smtpc_qp_class[i] = (i >= 33 && i <= 126 && i != '=') ? 0 : 1;
        smtpc_qp_class[' '] = smtpc_qp_class['\\t'] = 2;
        smtpc_qp_class['\\r'] = 3;
        smtpc_qp_class['\\n'] = 4;
    }

    /* Whole lines of 57 input octets, each 76 characters and CRLF. */
    static unsigned char *
    smtpc_b64_lines(const unsigned char *s, Py_ssize_t lines, unsigned char *o)
    {
        Py_ssize_t k;
        int g;
        unsigned int v;
        for (k = 0; k < lines; k++) {
            for (g = 0; g < 19; g++) {
                v = (unsigned int)s[0] << 16 | (unsigned int)s[1] << 8 | s[2];
                memcpy(o, smtpc_b64_pairs[v >> 12], 2);
                memcpy(o + 2, smtpc_b64_pairs[v & 0xfff], 2);
                s += 3;
                o += 4;
            }
            o[0] = '\\r';
            o[1] = '\\n';
            o += 2;
        }
        return o;
    }

    /* The last line: 1 to 56 octets, padded, and CRLF. */
    static unsigned char *
    smtpc_b64_tail(const unsigned char *s, Py_ssize_t n, unsigned char *o)
    {
        unsigned int v;
        for (; n >= 3; n -= 3, s += 3, o += 4) {
            v = (unsigned int)s[0] << 16 | (unsigned int)s[1] << 8 | s[2];
            memcpy(o, smtpc_b64_pairs[v >> 12], 2);
            memcpy(o + 2, smtpc_b64_pairs[v & 0xfff], 2);
        }
        if (n) {
            v = (unsigned int)s[0] << 16 | (n > 1 ? (unsigned int)s[1] << 8 : 0);
            o[0] = smtpc_b64_alphabet[v >> 18];
            o[1] = smtpc_b64_alphabet[v >> 12 & 63];
            o[2] = n > 1 ? smtpc_b64_alphabet[v >> 6 & 63] : '=';
            o[3] = '=';
            o += 4;
        }
        o[0] = '\\r';
        o[1] = '\\n';
        return o + 2;
    }

    typedef struct {
        Py_ssize_t start;   /* where the current line begins in the output */
        Py_ssize_t end;     /* octets written */
        int last;           /* length of the current line's last token: 1 or 3 */
        int ws;             /* a space or tab not written yet, or -1 */
        int skip_lf;        /* the input so far ended with CR */
    } smtpc_qp_state;

    /* Before a token of t characters: if the line would pass 76 characters,
       end it with a soft line break (rule 5). A full line of 76 gives its
       last token to the next line, so an escape is never split. */
    #define SMTPC_QP_ROOM(t) \\
        if (o - ls + (t) > 76) { \\
            if (o - ls <= 75) { \\
                out[o] = '='; out[o + 1] = '\\r'; out[o + 2] = '\\n'; \\
                o += 3; \\
                ls = o; \\
            } else { \\
                memmove(out + o - last + 3, out + o - last, (size_t)last); \\
                out[o - last] = '='; \\
                out[o - last + 1] = '\\r'; \\
                out[o - last + 2] = '\\n'; \\
                o += 3; \\
                ls = o - last; \\
            } \\
        }
    #define SMTPC_QP_LITERAL(ch) do { \\
            SMTPC_QP_ROOM(1) \\
            out[o++] = (ch); \\
            last = 1; \\
        } while (0)
    #define SMTPC_QP_ESCAPE(ch) do { \\
            SMTPC_QP_ROOM(3) \\
            out[o] = '='; \\
            out[o + 1] = smtpc_hex_digits[(ch) >> 4]; \\
            out[o + 2] = smtpc_hex_digits[(ch) & 15]; \\
            o += 3; \\
            last = 3; \\
        } while (0)

    /* A space or tab that ends a line is encoded (rule 3). With 74
       characters on the line it stays literal before a soft line break,
       which is the choice of the email package's body_encode(). */
    #define SMTPC_QP_TRAILING_WS() do { \\
            if (ws >= 0) { \\
                if (o - ls == 74) { \\
                    out[o] = (unsigned char)ws; \\
                    out[o + 1] = '='; out[o + 2] = '\\r'; out[o + 3] = '\\n'; \\
                    o += 4; \\
                    ls = o; \\
                } else { \\
                    SMTPC_QP_ESCAPE(ws); \\
                } \\
                ws = -1; \\
            } \\
        } while (0)

    /* Encode s[0:n] into out, which holds the current line from st->start
       to st->end and has room for 3n + n/8 + 32 more octets. */
    static void
    smtpc_qp_encode(smtpc_qp_state *st, const unsigned char *s, Py_ssize_t n,
                    unsigned char *out)
    {
        Py_ssize_t i, lim, o = st->end, ls = st->start;
        int last = st->last, ws = st->ws;
        unsigned char c;

        i = 0;
        if (n > 0 && st->skip_lf) {
            st->skip_lf = 0;
            if (s[0] == '\\n')
                i = 1;
        }
        for (; i < n; i++) {
            c = s[i];
            switch (smtpc_qp_class[c]) {
            case 0:
                if (ws >= 0) {
                    SMTPC_QP_LITERAL((unsigned char)ws);
                    ws = -1;
                }
                SMTPC_QP_LITERAL(c);
                /* The common case: a run of literals that fits the line. */
                lim = i + 1 + (76 - (o - ls));
                if (lim > n)
                    lim = n;
                while (i + 1 < lim && smtpc_qp_class[s[i + 1]] == 0)
                    out[o++] = s[++i];
                break;
            case 1:
                if (ws >= 0) {
                    SMTPC_QP_LITERAL((unsigned char)ws);
                    ws = -1;
                }
                SMTPC_QP_ESCAPE(c);
                break;
            case 2:
                if (ws >= 0)
                    SMTPC_QP_LITERAL((unsigned char)ws);
                ws = c;
                break;
            default:
                /* CRLF, a bare CR or a bare LF: one hard line break. */
                SMTPC_QP_TRAILING_WS();
                out[o] = '\\r';
                out[o + 1] = '\\n';
                o += 2;
                ls = o;
                last = 0;
                if (c == '\\r') {
                    if (i + 1 < n) {
                        if (s[i + 1] == '\\n')
                            i++;
                    } else {
                        st->skip_lf = 1;
                    }
                }
            }
        }
        st->end = o;
        st->start = ls;
        st->last = last;
        st->ws = ws;
    }

    /* The end of the content: a pending space or tab is encoded. */
    static void
    smtpc_qp_finish(smtpc_qp_state *st, unsigned char *out)
    {
        Py_ssize_t o = st->end, ls = st->start;
        int last = st->last, ws = st->ws;

        SMTPC_QP_TRAILING_WS();
        st->end = o;
        st->start = ls;
        st->last = last;
        st->ws = ws;
    }
    """
    ctypedef struct smtpc_qp_state:
        Py_ssize_t start
        Py_ssize_t end
        int last
        int ws
        int skip_lf

    void smtpc_mime_tables_init() noexcept nogil
    unsigned char *smtpc_b64_lines(const unsigned char *s, Py_ssize_t lines,
                                   unsigned char *o) noexcept nogil
    unsigned char *smtpc_b64_tail(const unsigned char *s, Py_ssize_t n,
                                  unsigned char *o) noexcept nogil
    void smtpc_qp_encode(smtpc_qp_state *st, const unsigned char *s,
                         Py_ssize_t n, unsigned char *out) noexcept nogil
    void smtpc_qp_finish(smtpc_qp_state *st, unsigned char *out) noexcept nogil


smtpc_mime_tables_init()

cdef enum:
    # Input octets per base64 line: 57 make 76 characters (RFC 2045 §6.8).
    _B64_LINE_OCTETS = 57
    # The longest quoted-printable line, without its CRLF (RFC 2045 §6.7).
    _QP_LINE = 76


cdef class Base64Encoder:
    """Streaming base64 for a MIME body part (RFC 2045 §6.8).

    Lines of 76 characters end with CRLF, and so does the last one; empty
    content encodes to nothing. The output is
    ``base64.encodebytes(content)`` with CRLF for LF, however the content
    is split. encode() returns whole lines only: up to 56 octets wait for
    the next chunk or finish().
    """

    cdef unsigned char _pending[_B64_LINE_OCTETS]
    cdef Py_ssize_t _npending

    def encode(self, data):
        """Return the lines the content given so far completes.

        Raises TypeError if ``data`` is not a bytes-like object.
        """
        cdef const char *src
        cdef const unsigned char *s
        cdef unsigned char *o
        cdef Py_ssize_t n, lines, need

        keep = _view(data, &src, &n)
        s = <const unsigned char *>src
        if n > PY_SSIZE_T_MAX // 2 - _B64_LINE_OCTETS:
            raise MemoryError()
        lines = (self._npending + n) // _B64_LINE_OCTETS
        if lines == 0:
            memcpy(self._pending + self._npending, s, <size_t>n)
            self._npending += n
            return b""
        out = PyBytes_FromStringAndSize(NULL, lines * 78)
        o = <unsigned char *>PyBytes_AS_STRING(out)

        # The octets held from the last chunk start the first line.
        if self._npending:
            need = _B64_LINE_OCTETS - self._npending
            memcpy(self._pending + self._npending, s, <size_t>need)
            o = smtpc_b64_lines(self._pending, 1, o)
            s += need
            n -= need
            lines -= 1
            self._npending = 0
        o = smtpc_b64_lines(s, lines, o)
        s += lines * _B64_LINE_OCTETS
        n -= lines * _B64_LINE_OCTETS
        memcpy(self._pending, s, <size_t>n)
        self._npending = n
        return out

    def finish(self):
        """Return the last line, padded, with its CRLF; reset the encoder."""
        cdef unsigned char buf[80]
        cdef unsigned char *end

        if self._npending == 0:
            return b""
        end = smtpc_b64_tail(self._pending, self._npending, buf)
        self._npending = 0
        return PyBytes_FromStringAndSize(<char *>buf, end - buf)


cdef class QuotedPrintableEncoder:
    """Streaming quoted-printable for text (RFC 2045 §6.7).

    CRLF, a bare LF and a bare CR in the input are each one line break
    and come out as CRLF: text is in canonical form (RFC 2046 §4.1.1), so
    decoding gives CRLF line breaks. Octets other than printable ASCII
    (33-126 but "="), space and tab become "=XX". A space or tab that
    would end a line is encoded. Lines are at most 76 characters with a
    soft line break "=" that never splits an escape. The output equals the
    email package's ``quoprimime.body_encode(text, 76, "\\r\\n")`` for the
    whole content, however it is split. The line being built is held until
    it is complete, so encode() may return less than the chunk gave.
    """

    cdef unsigned char _line[_QP_LINE + 4]
    cdef smtpc_qp_state _state

    def __cinit__(self):
        self._state.ws = -1

    def encode(self, data):
        """Return the encoded text that the content given so far settles.

        Raises TypeError if ``data`` is not a bytes-like object.
        """
        cdef const char *src
        cdef Py_ssize_t n, cap
        cdef PyObject *raw
        cdef char *out

        keep = _view(data, &src, &n)
        if n > (PY_SSIZE_T_MAX - 128) // 4:
            raise MemoryError()
        cap = self._state.end + 3 * n + n // 8 + 32
        raw = _bytes_new(NULL, cap)
        out = _bytes_data(raw)
        memcpy(out, self._line, <size_t>self._state.end)
        smtpc_qp_encode(&self._state, <const unsigned char *>src, n,
                        <unsigned char *>out)
        SMTPC_INVARIANT(self._state.end <= cap)
        SMTPC_INVARIANT(self._state.end - self._state.start <= _QP_LINE)

        # The line being built stays here; the rest is settled.
        out = _bytes_data(raw)
        self._state.end -= self._state.start
        memcpy(self._line, out + self._state.start, <size_t>self._state.end)
        _PyBytes_Resize(&raw, self._state.start)
        self._state.start = 0
        result = <object>raw
        Py_DECREF(result)
        return result

    def finish(self):
        """Return the rest of the encoded text; reset the encoder.

        No line break is added after the last line of the content.
        """
        cdef unsigned char buf[_QP_LINE + 16]

        memcpy(buf, self._line, <size_t>self._state.end)
        smtpc_qp_finish(&self._state, buf)
        result = PyBytes_FromStringAndSize(<char *>buf, self._state.end)
        self._state.start = self._state.end = 0
        self._state.last = 0
        self._state.ws = -1
        self._state.skip_lf = 0
        return result


# --- end of the streaming transfer encodings ----------------------------------



# Dot-stuffing (RFC 5321 §4.5.2): every CRLF, bare LF and bare CR becomes
# CRLF, and a line that begins with "." gets one more. One C loop does it,
# 16 octets at a time: it marks the octets that need a change (a bare CR or
# LF, a "." that begins a line), copies the block, and only stops at a mark.
# CRLF text goes through without a stop at each line. Run without an output,
# it finds the first octet that needs a change, so that a chunk that needs
# none is not copied at all.

cdef extern from *:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #elif defined(__aarch64__) && defined(__ARM_NEON)
    #include <arm_neon.h>

    /* The top bit of each octet of v, as bit j for octet j. */
    static inline unsigned
    smtpc_neon_mask(uint8x16_t v)
    {
        static const uint8_t weights[16] = {
            1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        uint8x16_t bits = vandq_u8(v, vld1q_u8(weights));
        return vaddv_u8(vget_low_u8(bits)) | vaddv_u8(vget_high_u8(bits)) << 8;
    }
    #endif

    /* Bit j of each mask: octet j of the block is CR, LF or ".". */
    static inline void
    smtpc_masks(const unsigned char *p, unsigned *cr, unsigned *lf,
                unsigned *dot)
    {
    #if defined(__SSE2__)
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        *cr = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('\\r')));
        *lf = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('\\n')));
        *dot = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('.')));
    #elif defined(__aarch64__) && defined(__ARM_NEON)
        uint8x16_t v = vld1q_u8(p);
        *cr = smtpc_neon_mask(vceqq_u8(v, vdupq_n_u8('\\r')));
        *lf = smtpc_neon_mask(vceqq_u8(v, vdupq_n_u8('\\n')));
        *dot = smtpc_neon_mask(vceqq_u8(v, vdupq_n_u8('.')));
    #else
        unsigned c = 0, l = 0, d = 0;
        int j;
        for (j = 0; j < 16; j++) {
            c |= (unsigned)(p[j] == '\\r') << j;
            l |= (unsigned)(p[j] == '\\n') << j;
            d |= (unsigned)(p[j] == '.') << j;
        }
        *cr = c;
        *lf = l;
        *dot = d;
    #endif
    }

    /* Reads s[i:n] from the state *st and writes the result at out + *o.
       Returns the index it stopped at: n when done; the first octet that
       needs a change when out is NULL; otherwise where the next block might
       not fit in cap. A block's store may write up to 15 octets past the
       result: cap allows for it. */
    static Py_ssize_t
    smtpc_stuff(const unsigned char *s, Py_ssize_t i, Py_ssize_t n,
                unsigned char *out, Py_ssize_t *o, Py_ssize_t cap,
                smtpc_stuff_state *st)
    {
        Py_ssize_t k = *o;
        unsigned char tail[16];
        const unsigned char *p;
        unsigned cr, lf, dot, marks;
        /* The octet before s[i]: an LF (or the start of the content), a CR. */
        unsigned ls = (unsigned)st->at_line_start;
        unsigned pcr = i > 0 && s[i - 1] == '\\r';
        int len, j;

        if (i < n && st->skip_lf) {
            /* The LF of a CRLF whose CR ended the last chunk, and went out
               as CRLF with it. */
            if (s[i] == '\\n') {
                if (!out)
                    return i;
                i++;
            }
            st->skip_lf = 0;
        }
        while (i < n) {
            if (out && k + 18 > cap)
                break;
            len = n - i < 16 ? (int)(n - i) : 16;
            p = s + i;
            if (len < 16) {
                memset(tail, 0, sizeof tail);
                memcpy(tail, p, (size_t)len);
                p = tail;
            }
            smtpc_masks(p, &cr, &lf, &dot);
            marks = (lf & ~(cr << 1 | pcr)) | (cr & ~(lf >> 1));
            if (!st->keep_dots)
                marks |= dot & (lf << 1 | ls);
            /* A CR that ends the block, with its LF next. */
            if (cr & 0x8000 && i + 16 < n && s[i + 16] == '\\n')
                marks &= 0x7fff;
            marks &= (1u << len) - 1;
            if (out)
                memcpy(out + k, p, 16);
            if (!marks) {
                i += len;
                k += len;
                pcr = cr >> (len - 1) & 1;
                ls = lf >> (len - 1) & 1;
                continue;
            }
            j = __builtin_ctz(marks);
            if (j) {
                pcr = cr >> (j - 1) & 1;
                ls = lf >> (j - 1) & 1;
            }
            i += j;
            k += j;
            if (!out)
                break;
            if (s[i] == '.') {
                /* The "." itself goes with the next block. */
                out[k++] = '.';
                ls = 0;
                continue;
            }
            /* A bare CR or LF. A CR that ends the chunk may be half of a
               CRLF. */
            st->skip_lf = s[i] == '\\r' && i + 1 == n;
            out[k] = '\\r';
            out[k + 1] = '\\n';
            i++;
            k += 2;
            ls = 1;
            pcr = 0;
        }
        st->at_line_start = (int)ls;
        *o = k;
        return i;
    }
    """
    Py_ssize_t smtpc_stuff(const unsigned char *s, Py_ssize_t i, Py_ssize_t n,
                           unsigned char *out, Py_ssize_t *o, Py_ssize_t cap,
                           StuffState *st) noexcept nogil


cdef object _encode(StuffState *st, object data, const char *src,
                    Py_ssize_t n):
    cdef const unsigned char *s = <const unsigned char *>src
    cdef Py_ssize_t i, o = 0, cap
    cdef PyObject *raw

    if n > PY_SSIZE_T_MAX // 2 - 64:
        raise MemoryError()
    i = smtpc_stuff(s, 0, n, NULL, &o, 0, st)
    if i == n and PyBytes_CheckExact(data):
        # Nothing to change: share the caller's bytes.
        return data

    # Each input octet yields at most two: a bare CR or LF becomes CRLF, a
    # leading "." becomes "..". Lines of a usual length fit in a sixteenth
    # more; past that, the result grows once to the worst case for the rest
    # of the chunk. Reserving the worst case up front would double the
    # memory touched for large chunks.
    cap = n + n // 16 + 32
    raw = _bytes_new(NULL, cap)
    memcpy(_bytes_data(raw), src, <size_t>i)
    o = i
    while True:
        i = smtpc_stuff(s, i, n, <unsigned char *>_bytes_data(raw), &o, cap, st)
        if i == n:
            break
        cap = o + 2 * (n - i) + 32
        _PyBytes_Resize(&raw, cap)
    SMTPC_INVARIANT(o <= cap)

    # Shrinks in place: the result is not copied.
    _PyBytes_Resize(&raw, o)
    result = <object>raw
    Py_DECREF(result)
    return result


cdef object _encode_chunk(StuffState *st, object data):
    cdef const char *src
    cdef Py_ssize_t n

    keep = _view(data, &src, &n)
    return _encode(st, data, src, n)


@cython.final
cdef class DataEncoder:
    """Streaming dot-stuffer for the message content after DATA.

    RFC 5321 §4.5.2: every CRLF, bare LF and bare CR becomes CRLF, and a line
    that begins with "." gets one more. The output does not depend on how the
    input is cut into chunks. A CR that ends a chunk is written as CRLF at
    once; an LF that starts the next chunk is then dropped, as the second half
    of that line ending.
    """

    def __cinit__(self):
        self._state.at_line_start = True

    def encode(self, data):
        """Return the dot-stuffed form of the next chunk of message content.

        Raises TypeError if ``data`` is not a bytes-like object.
        """
        return _encode_chunk(&self._state, data)

    def finish(self):
        """Return what ends the message content: CRLF if needed, then ".", CRLF.

        The encoder is reset afterwards, ready for the next message.
        """
        end = b".\r\n" if self._state.at_line_start else b"\r\n.\r\n"
        self._state.at_line_start = True
        self._state.skip_lf = False
        return end

    def reset(self):
        """Forget the state left by earlier chunks."""
        self._state.at_line_start = True
        self._state.skip_lf = False


@cython.final
cdef class LineEncoder:
    """Line-ending normaliser for BDAT chunks (RFC 3030 §3): every CRLF, bare
    LF and bare CR becomes CRLF, and nothing else changes. A CR that ends a
    chunk is written as CRLF at once, and an LF that starts the next chunk
    is dropped, as with DataEncoder.
    """

    def __cinit__(self):
        self._state.keep_dots = True

    def encode(self, data):
        """Return the next chunk with its line endings made CRLF.

        Raises TypeError if ``data`` is not a bytes-like object.
        """
        return _encode_chunk(&self._state, data)


@cython.final
@cython.embedsignature(False)
cdef class Emitter:
    """Emitter(sink, size=256, /)\n--\n\nOutput through one fixed buffer to a sink.

    The sink takes a list of one or two bytes-like objects and must send them,
    in order, before it returns; it must not keep them, since one may be a
    memoryview of the buffer. Commands stay in the buffer until it is full or
    flush() is called, so pipelined commands leave in one send.

    Message content is dot-stuffed a chunk at a time. An encoded chunk that
    fits in the free space is copied into the buffer; a larger one goes to the
    sink at once, behind the buffered octets and in the same call, without
    being copied again. A chunk that needs no change goes as the caller's own
    bytes object, so CRLF text leaves without a copy.

    Raises ValueError if ``size`` is below MIN_BUFFER_SIZE.
    """

    def __cinit__(self, *args):
        # Everything is set here, where no subclass or second call can see
        # the emitter half made.
        cdef Py_ssize_t size = _DEFAULT_BUFFER_SIZE
        cdef Py_ssize_t n = PyTuple_GET_SIZE(args)

        if n == 2:
            size = _as_size(_item(args, 1), NULL)
        if not 1 <= n <= 2 or size < _MIN_BUFFER_SIZE:
            _refuse(_check_size, args)
        # A larger buffer is a bytearray, freed with the emitter.
        self._buf = self._inline
        if size > _DEFAULT_BUFFER_SIZE:
            self._heap = _bytearray_new(NULL, size)
            self._buf = _bytearray_data(self._heap)
        self._size = size
        self._sink = <object>_item(args, 0)
        self._data.at_line_start = True

    @property
    def size(self):
        """The buffer size in octets."""
        return self._size

    @property
    def pending(self):
        """Octets queued and not yet handed to the sink."""
        return self._pos

    def command(self, *args):
        """command($self, line, limit=512, /)\n--\n\nQueue a command line and its CRLF.

        Every check runs before anything is queued. Error messages name the
        verb only, never an argument, which may be a credential. An empty
        line is an empty AUTH response (RFC 4954 §4). Raises ValueError for
        CR, LF or NUL in the line, or a line longer than ``limit`` with its
        CRLF (RFC 5321 §4.5.3.1.4); TypeError if it is not bytes.
        """
        cdef Py_ssize_t limit = _MAX_COMMAND_LINE
        cdef Py_ssize_t n = PyTuple_GET_SIZE(args)
        cdef const char *s = NULL
        cdef PyObject *line
        cdef bint bad = not 1 <= n <= 2

        if not bad:
            line = _item(args, 0)
            if n == 2:
                limit = _as_size(_item(args, 1), NULL)
            bad = not _is_bytes(line)
        if not bad:
            s = _bytes_data(line)
            n = _bytes_len(line)
            bad = n + 2 > limit or _has_line_break(<const unsigned char *>s, n)
        if bad:
            _refuse(_check_command, args)
        self._put(s, n)
        self._put(b"\r\n", 2)

    def write(self, data):
        """Queue octets as they are, as for a BDAT chunk (RFC 3030 §2).

        Data that does not fit in the free space goes to the sink at once,
        behind the buffered octets and in the same call, without being copied.
        Raises TypeError if ``data`` is not a bytes-like object.
        """
        cdef const char *src
        cdef Py_ssize_t n

        keep = _view(data, &src, &n)
        self._write(data, src, n)

    def begin_data(self):
        """Start new message content: reset the dot-stuffing state."""
        self._data.at_line_start = True
        self._data.skip_lf = False

    def write_data(self, data):
        """Queue the next chunk of message content, dot-stuffed.

        RFC 5321 §4.5.2. The emitter keeps no reference to ``data`` once this
        returns. Raises TypeError if ``data`` is not a bytes-like object.
        """
        encoded = _encode_chunk(&self._data, data)
        self._write(encoded, PyBytes_AS_STRING(encoded),
                    PyBytes_GET_SIZE(encoded))

    def end_data(self):
        """Queue the end of the message content: CRLF if needed, ".", CRLF."""
        if self._data.at_line_start:
            self._put(b".\r\n", 3)
        else:
            self._put(b"\r\n.\r\n", 5)
        self._data.at_line_start = True
        self._data.skip_lf = False

    def flush(self):
        """Hand everything queued to the sink."""
        self._send(None)

    cdef int _put(self, const char *src, Py_ssize_t n) except -1:
        # Fills the buffer and sends each time it is full: the buffer never
        # grows, so a long command leaves in several sink calls.
        cdef Py_ssize_t k

        while n > 0:
            if self._pos == self._size:
                self._send(None)
            k = min(n, self._size - self._pos)
            memcpy(self._buf + self._pos, src, <size_t>k)
            self._pos += k
            src += k
            n -= k
        SMTPC_INVARIANT(self._pos <= self._size)
        return 0

    cdef int _write(self, object data, const char *src,
                    Py_ssize_t n) except -1:
        # ``data`` holds the ``n`` octets at ``src``.
        if n <= self._size - self._pos:
            memcpy(self._buf + self._pos, src, <size_t>n)
            self._pos += n
            return 0
        return self._send(data)

    cdef int _send(self, object data) except -1:
        # Hands the buffered octets to the sink, then ``data`` unless it is
        # None, in one call. The buffer is emptied before the call: once the
        # sink has them, the octets count as sent even if it raises.
        cdef Py_ssize_t n = self._pos
        cdef bint more = data is not None

        if n == 0 and not more:
            return 0
        self._pos = 0
        pieces = PyList_New((n != 0) + more)
        if n:
            buffered = PyMemoryView_FromMemory(self._buf, n, PyBUF_READ)
            Py_INCREF(buffered)
            PyList_SET_ITEM(pieces, 0, buffered)
        if more:
            Py_INCREF(data)
            PyList_SET_ITEM(pieces, n != 0, data)
        _call_one(self._sink, pieces)
        return 0


# --- MD4 (RFC 1320), for NTLM where OpenSSL has no MD4 -------------------------

from libc.stdint cimport uint32_t, uint64_t


cdef inline uint32_t _rotl(uint32_t x, int s) noexcept nogil:
    return (x << s) | (x >> (32 - s))


cdef void _md4_block(uint32_t *state, const unsigned char *p) noexcept nogil:
    # One 64-byte block, the three rounds of RFC 1320 §3.4 unrolled by step.
    cdef uint32_t x[16]
    cdef uint32_t a = state[0], b = state[1], c = state[2], d = state[3]
    cdef int i, j
    cdef int third[4]

    third[0], third[1], third[2], third[3] = 0, 2, 1, 3

    for i in range(16):
        x[i] = (<uint32_t>p[4 * i] | (<uint32_t>p[4 * i + 1] << 8)
                | (<uint32_t>p[4 * i + 2] << 16)
                | (<uint32_t>p[4 * i + 3] << 24))

    for i in range(0, 16, 4):
        a = _rotl(a + ((b & c) | (~b & d)) + x[i], 3)
        d = _rotl(d + ((a & b) | (~a & c)) + x[i + 1], 7)
        c = _rotl(c + ((d & a) | (~d & b)) + x[i + 2], 11)
        b = _rotl(b + ((c & d) | (~c & a)) + x[i + 3], 19)
    for i in range(4):
        a = _rotl(a + ((b & c) | (b & d) | (c & d)) + x[i] + 0x5A827999u, 3)
        d = _rotl(d + ((a & b) | (a & c) | (b & c)) + x[i + 4] + 0x5A827999u, 5)
        c = _rotl(c + ((d & a) | (d & b) | (a & b)) + x[i + 8] + 0x5A827999u, 9)
        b = _rotl(b + ((c & d) | (c & a) | (d & a)) + x[i + 12] + 0x5A827999u,
                  13)
    for j in range(4):
        i = third[j]
        a = _rotl(a + (b ^ c ^ d) + x[i] + 0x6ED9EBA1u, 3)
        d = _rotl(d + (a ^ b ^ c) + x[i + 8] + 0x6ED9EBA1u, 9)
        c = _rotl(c + (d ^ a ^ b) + x[i + 4] + 0x6ED9EBA1u, 11)
        b = _rotl(b + (c ^ d ^ a) + x[i + 12] + 0x6ED9EBA1u, 15)

    state[0] += a
    state[1] += b
    state[2] += c
    state[3] += d


def md4(data):
    """The MD4 digest of ``data`` (RFC 1320): 16 bytes.

    MD4 is broken as a hash; NTLM still derives its keys with it.
    """
    cdef const char *start
    cdef uint32_t state[4]
    cdef unsigned char tail[128]
    cdef unsigned char out[16]
    cdef const unsigned char *src
    cdef Py_ssize_t n, done, rest, padded
    cdef uint64_t bits
    cdef int i

    keep = _view(data, &start, &n)
    src = <const unsigned char *>start
    state[0] = 0x67452301u
    state[1] = 0xEFCDAB89u
    state[2] = 0x98BADCFEu
    state[3] = 0x10325476u
    done = 0
    with nogil:
        while n - done >= 64:
            _md4_block(state, src + done)
            done += 64

        # §3.1-3.2: 0x80, zeros to 56 mod 64, the length in bits.
        rest = n - done
        memcpy(tail, src + done, rest)
        tail[rest] = 0x80
        padded = 64 if rest < 56 else 128
        for i in range(<int>rest + 1, <int>padded - 8):
            tail[i] = 0
        bits = (<uint64_t>n) * 8
        for i in range(8):
            tail[padded - 8 + i] = <unsigned char>(bits >> (8 * i))
        _md4_block(state, tail)
        if padded == 128:
            _md4_block(state, tail + 64)

    for i in range(16):
        out[i] = <unsigned char>(state[i // 4] >> (8 * (i % 4)))
    return PyBytes_FromStringAndSize(<char *>out, 16)
