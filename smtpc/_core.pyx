# cython: auto_pickle=False, autotestdict=False, binding=False
# cython: embedsignature.format=clinic
"""Compiled core: dot-stuffing, the fixed-buffer emitter, command checks, base64.

``smtpc._core_py`` is its pure-Python twin: same names, same bytes, same
exceptions. The loops over message content touch no Python objects, and the
emitter's only Python objects are the memoryviews it hands to the sink.
"""

from cpython.buffer cimport (
    PyBUF_READ,
    PyBUF_SIMPLE,
    PyBuffer_Release,
    PyObject_CheckBuffer,
    PyObject_GetBuffer,
)
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_Check,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
    _PyBytes_Resize,
)
from cpython.list cimport PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF
from libc.string cimport memcpy

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
    # Raw-pointer forms, so that the result can be shrunk in place.
    PyObject *_bytes_new "PyBytes_FromStringAndSize" (
        const char *s, Py_ssize_t n) except NULL
    char *_bytes_data "PyBytes_AS_STRING" (PyObject *o) noexcept nogil

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


cdef int _require_bytes(object value, object what) except -1:
    if not PyBytes_Check(value):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")
    return 0


cdef int _get_buffer(object data, Py_buffer *view) except -1:
    if not PyObject_CheckBuffer(data):
        raise TypeError(
            f"expected a bytes-like object, not {type(data).__name__}")
    PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
    return 0


cdef bint _has_line_break(object arg) noexcept:
    # arg is bytes or a subclass: the callers have checked.
    cdef const unsigned char *s = <const unsigned char *>PyBytes_AS_STRING(arg)
    cdef Py_ssize_t i
    cdef unsigned char c

    for i in range(PyBytes_GET_SIZE(arg)):
        c = s[i]
        if c == c'\r' or c == c'\n' or c == 0:
            return True
    return False


cdef int _check_argument(object arg, object what) except -1:
    _require_bytes(arg, what)
    if _has_line_break(arg):
        raise ValueError(f"{what} contains CR, LF or NUL")
    return 0


def check_argument(arg, what):
    """Refuse a command argument that could end the command line early.

    Raises ValueError if ``arg`` contains CR, LF or NUL (RFC 5321 §2.3.8),
    TypeError if it is not bytes.
    """
    _check_argument(arg, what)


def check_path(address):
    """Validate a mailbox for MAIL FROM or RCPT TO, given without angle brackets.

    ``b""`` is allowed: it is the null reverse-path. Raises ValueError for CR,
    LF or NUL, for lengths beyond RFC 5321 §4.5.3.1, and for a control
    character, space or angle bracket; TypeError if it is not bytes.
    """
    cdef const unsigned char *s
    cdef Py_ssize_t n, i, at = -1
    cdef unsigned char c

    _check_argument(address, "address")
    s = <const unsigned char *>PyBytes_AS_STRING(address)
    n = PyBytes_GET_SIZE(address)
    if n + 2 > _MAX_PATH:
        raise ValueError(f"address longer than {_MAX_PATH} octets")

    # The local part ends at the last "@": it may itself hold a quoted "@".
    for i in range(n - 1, -1, -1):
        if s[i] == c'@':
            at = i
            break
    if at >= 0:
        if at > _MAX_LOCAL_PART:
            raise ValueError(f"local part longer than {_MAX_LOCAL_PART} octets")
        if n - at - 1 > _MAX_DOMAIN:
            raise ValueError(f"domain longer than {_MAX_DOMAIN} octets")

    for i in range(n):
        c = s[i]
        if c <= c' ' or c == 0x7f or c == c'<' or c == c'>':
            raise ValueError(
                "address contains a control character, space or angle bracket")


cdef const char *_B64_ALPHABET = (
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


cdef inline int _b64_value(unsigned char c) noexcept nogil:
    if c'A' <= c <= c'Z':
        return c - c'A'
    if c'a' <= c <= c'z':
        return c - c'a' + 26
    if c'0' <= c <= c'9':
        return c - c'0' + 52
    if c == c'+':
        return 62
    if c == c'/':
        return 63
    return -1


def b64encode(data):
    """Encode with the standard alphabet and padding, without a newline.

    RFC 4648 §4. Raises TypeError if ``data`` is not bytes.
    """
    cdef const unsigned char *s
    cdef unsigned char *o
    cdef Py_ssize_t n, i
    cdef unsigned int v

    _require_bytes(data, "data")
    s = <const unsigned char *>PyBytes_AS_STRING(data)
    n = PyBytes_GET_SIZE(data)
    if n > PY_SSIZE_T_MAX // 4 * 3 - 2:
        raise MemoryError()
    out = PyBytes_FromStringAndSize(NULL, (n + 2) // 3 * 4)
    o = <unsigned char *>PyBytes_AS_STRING(out)

    for i in range(0, n - 2, 3):
        v = s[i] << 16 | s[i + 1] << 8 | s[i + 2]
        o[0] = _B64_ALPHABET[v >> 18]
        o[1] = _B64_ALPHABET[v >> 12 & 63]
        o[2] = _B64_ALPHABET[v >> 6 & 63]
        o[3] = _B64_ALPHABET[v & 63]
        o += 4
    i = n - n % 3
    if i < n:
        v = s[i] << 16
        if i + 1 < n:
            v |= s[i + 1] << 8
        o[0] = _B64_ALPHABET[v >> 18]
        o[1] = _B64_ALPHABET[v >> 12 & 63]
        o[2] = _B64_ALPHABET[v >> 6 & 63] if i + 1 < n else c'='
        o[3] = c'='
    return out


def b64decode(data):
    """Decode standard, padded base64, as in an AUTH challenge (RFC 4954 §4).

    Raises ValueError for whitespace, a character outside the alphabet, a
    length that is not a multiple of 4, or padding anywhere but at the end;
    TypeError if ``data`` is not bytes.
    """
    cdef const unsigned char *s
    cdef unsigned char *o
    cdef Py_ssize_t n, i, pad = 0
    cdef int a, b, c, d
    cdef bint last

    _require_bytes(data, "data")
    s = <const unsigned char *>PyBytes_AS_STRING(data)
    n = PyBytes_GET_SIZE(data)
    if n % 4:
        raise ValueError("invalid base64")
    if n == 0:
        return b""
    if s[n - 1] == c'=':
        pad = 2 if s[n - 2] == c'=' else 1
    out = PyBytes_FromStringAndSize(NULL, n // 4 * 3 - pad)
    o = <unsigned char *>PyBytes_AS_STRING(out)

    # The padding of the last quantum stands for zero bits and shortens the
    # output; an "=" anywhere else is outside the alphabet.
    for i in range(0, n, 4):
        last = i + 4 == n
        a = _b64_value(s[i])
        b = _b64_value(s[i + 1])
        c = 0 if last and pad == 2 else _b64_value(s[i + 2])
        d = 0 if last and pad else _b64_value(s[i + 3])
        if a < 0 or b < 0 or c < 0 or d < 0:
            raise ValueError("invalid base64")
        o[0] = <unsigned char>(a << 2 | b >> 4)
        if last and pad == 2:
            break
        o[1] = <unsigned char>(b << 4 | c >> 2)
        if last and pad:
            break
        o[2] = <unsigned char>(c << 6 | d)
        o += 3
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
        cdef Py_buffer view
        cdef const unsigned char *s
        cdef unsigned char *o
        cdef Py_ssize_t n, lines, need

        _get_buffer(data, &view)
        try:
            s = <const unsigned char *>view.buf
            n = view.len
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
        finally:
            PyBuffer_Release(&view)

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
        cdef Py_buffer view
        cdef Py_ssize_t n, cap
        cdef PyObject *raw
        cdef char *out

        _get_buffer(data, &view)
        try:
            n = view.len
            if n > (PY_SSIZE_T_MAX - 128) // 4:
                raise MemoryError()
            cap = self._state.end + 3 * n + n // 8 + 32
            raw = _bytes_new(NULL, cap)
            out = _bytes_data(raw)
            memcpy(out, self._line, <size_t>self._state.end)
            smtpc_qp_encode(&self._state, <const unsigned char *>view.buf, n,
                            <unsigned char *>out)
        finally:
            PyBuffer_Release(&view)
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


# Dot-stuffing (RFC 5321 §4.5.2). The content is read as runs of input that
# pass unchanged, each followed by something to insert: a "." before a line
# that begins with one, or CRLF in place of a bare CR or bare LF. An exact CRLF
# in the input stays inside its run, so CRLF text without leading dots is a
# single run.

cdef enum:
    _END = 0    # the run reaches the end of the chunk
    _DOT = 1    # insert "." after the run
    _CRLF = 2   # insert CRLF after the run; the bare CR or LF is skipped


cdef extern from *:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif

    /* Index of the first CR or LF in s[i:n], or n. Lines are short, so one
       pass looking for both beats a memchr() for each. */
    static inline Py_ssize_t
    smtpc_find_eol(const unsigned char *s, Py_ssize_t i, Py_ssize_t n)
    {
    #if defined(__SSE2__)
        const __m128i cr = _mm_set1_epi8('\\r');
        const __m128i lf = _mm_set1_epi8('\\n');
        for (; i + 16 <= n; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
            int hits = _mm_movemask_epi8(_mm_or_si128(
                _mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
            if (hits)
                return i + __builtin_ctz((unsigned int)hits);
        }
    #endif
        while (i < n && s[i] != '\\r' && s[i] != '\\n')
            i++;
        return i;
    }
    """
    Py_ssize_t smtpc_find_eol(const unsigned char *s, Py_ssize_t i,
                              Py_ssize_t n) noexcept nogil


cdef struct Scan:
    const unsigned char *src
    Py_ssize_t end
    Py_ssize_t pos       # start of the next run
    StuffState state     # the encoder's state, held here while a chunk is read


cdef inline void _scan_init(Scan *sc, StuffState *state, const void *src,
                            Py_ssize_t n) noexcept nogil:
    sc.src = <const unsigned char *>src
    sc.end = n
    sc.pos = 0
    sc.state = state[0]


cdef inline int _next_run(Scan *sc, Py_ssize_t *start,
                          Py_ssize_t *stop) noexcept nogil:
    cdef const unsigned char *s = sc.src
    cdef Py_ssize_t n = sc.end
    cdef Py_ssize_t i = sc.pos
    cdef Py_ssize_t e

    if i < n and sc.state.skip_lf:
        # Only a chunk's first byte can meet this flag: the LF that completes
        # a CRLF whose CR ended the previous chunk was written with it.
        sc.state.skip_lf = False
        if s[i] == c'\n':
            i += 1
    start[0] = i
    if i == n:
        stop[0] = i
        sc.pos = i
        return _END
    if sc.state.at_line_start:
        sc.state.at_line_start = False
        if s[i] == c'.' and not sc.state.keep_dots:
            stop[0] = i
            sc.pos = i
            return _DOT

    while True:
        e = smtpc_find_eol(s, i, n)
        if e == n:
            stop[0] = n
            sc.pos = n
            return _END
        if s[e] == c'\r' and e + 1 < n and s[e + 1] == c'\n':
            i = e + 2
            if i == n:
                sc.state.at_line_start = True
                stop[0] = n
                sc.pos = n
                return _END
            if s[i] == c'.' and not sc.state.keep_dots:
                stop[0] = i
                sc.pos = i
                return _DOT
            continue
        stop[0] = e
        sc.pos = e + 1
        sc.state.at_line_start = True
        sc.state.skip_lf = s[e] == c'\r' and e + 1 == n
        return _CRLF


cdef object _encode(StuffState *st, object data, Py_buffer *view):
    cdef Scan sc
    cdef Py_ssize_t a, b, cap = 0, o = 0
    cdef int code
    cdef PyObject *raw = NULL
    cdef char *out

    if view.len == 0:
        return b""
    if view.len > PY_SSIZE_T_MAX // 2:
        raise MemoryError()
    _scan_init(&sc, st, view.buf, view.len)
    while True:
        code = _next_run(&sc, &a, &b)
        if raw == NULL:
            if code == _END and b - a == view.len and PyBytes_CheckExact(data):
                # Nothing to change: share the caller's bytes.
                st[0] = sc.state
                return data
            # Each input octet yields at most two: a bare CR or LF becomes
            # CRLF, a leading "." becomes "..". Lines of a usual length fit in
            # a sixteenth more; past that, the result grows once to the worst
            # case for the rest of the chunk. Reserving the worst case up
            # front would double the memory touched for large chunks.
            cap = view.len + view.len // 16 + 16
            raw = _bytes_new(NULL, cap)
        if o + (b - a) + 2 > cap:
            cap = o + 2 * (view.len - a)
            _PyBytes_Resize(&raw, cap)
        out = _bytes_data(raw)
        memcpy(out + o, sc.src + a, <size_t>(b - a))
        o += b - a
        if code == _END:
            break
        if code == _DOT:
            out[o] = c'.'
            o += 1
        else:
            out[o] = c'\r'
            out[o + 1] = c'\n'
            o += 2
    st[0] = sc.state
    SMTPC_INVARIANT(o <= cap)

    # Shrinks in place: the result is not copied.
    _PyBytes_Resize(&raw, o)
    result = <object>raw
    Py_DECREF(result)
    return result


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
        self._state.skip_lf = False
        self._state.keep_dots = False

    def encode(self, data):
        """Return the dot-stuffed form of the next chunk of message content.

        Raises TypeError if ``data`` is not a bytes-like object.
        """
        cdef Py_buffer view

        _get_buffer(data, &view)
        try:
            return _encode(&self._state, data, &view)
        finally:
            PyBuffer_Release(&view)

    def finish(self):
        """Return what ends the message content: CRLF if needed, then ".", CRLF.

        The encoder is reset afterwards, ready for the next message.
        """
        end = b".\r\n" if self._state.at_line_start else b"\r\n.\r\n"
        self.reset()
        return end

    def reset(self):
        """Forget the state left by earlier chunks."""
        self._state.at_line_start = True
        self._state.skip_lf = False


cdef class LineEncoder:
    """Line-ending normaliser for BDAT chunks (RFC 3030 §3): every CRLF, bare
    LF and bare CR becomes CRLF, and nothing else changes. A CR that ends a
    chunk is written as CRLF at once, and an LF that starts the next chunk
    is dropped, as with DataEncoder.
    """

    def __cinit__(self):
        self._state.at_line_start = True
        self._state.skip_lf = False
        self._state.keep_dots = True

    def encode(self, data):
        """Return the next chunk with its line endings made CRLF.

        Raises TypeError if ``data`` is not a bytes-like object.
        """
        cdef Py_buffer view

        _get_buffer(data, &view)
        try:
            return _encode(&self._state, data, &view)
        finally:
            PyBuffer_Release(&view)


cdef class Emitter:
    """Output through one fixed buffer to a sink.

    The sink takes a list of bytes or memoryview objects and must send them
    all, in order, before it returns; it must not keep the memoryviews, which
    show the buffer's memory and the caller's chunks. Commands stay in the
    buffer until it is full or flush() is called, so pipelined commands leave
    in one send.

    In message content, a run of input that needs no change and is at least an
    eighth of the buffer goes to the sink as a memoryview of the caller's
    chunk. Shorter runs and the inserted "." and CRLF are copied into the
    buffer, and go beside those views as views of the buffer, or as small
    bytes objects when only a few octets lie between two views. A sink call
    carries at most 64 pieces; write_data() hands every view of a chunk to
    the sink before it returns. A chunk of 4 KiB or more is encoded whole
    and goes as one piece (the chunk itself when it needs no change), so
    text with bare LF line endings leaves in large writes.

    Raises ValueError if ``size`` is below MIN_BUFFER_SIZE.
    """

    def __cinit__(self):
        # Safe defaults until __init__ has run: a sink call then fails.
        self._buf = self._inline
        self._size = _DEFAULT_BUFFER_SIZE
        self._zero_copy = _DEFAULT_BUFFER_SIZE // 8
        self._data.at_line_start = True

    def __init__(self, sink, Py_ssize_t size=_DEFAULT_BUFFER_SIZE):
        cdef char *buf = self._inline

        if size < _MIN_BUFFER_SIZE:
            raise ValueError(
                f"buffer size must be at least {_MIN_BUFFER_SIZE} bytes")
        if size > _DEFAULT_BUFFER_SIZE:
            buf = <char *>PyMem_Malloc(<size_t>size)
            if buf == NULL:
                raise MemoryError()
        if self._buf != self._inline:
            PyMem_Free(self._buf)
        self._buf = buf
        self._size = size
        self._sink = sink
        self._pieces = None
        self._pos = self._mark = 0
        # Below this a memoryview costs more than copying the run, and the
        # copy only fills a small part of the buffer.
        self._zero_copy = size // 8
        self._data.at_line_start = True
        self._data.skip_lf = False

    def __dealloc__(self):
        if self._buf != self._inline:
            PyMem_Free(self._buf)

    @property
    def size(self):
        """The buffer size in octets."""
        return self._size

    @property
    def pending(self):
        """Octets queued and not yet handed to the sink."""
        return self._pos

    # The default is MAX_COMMAND_LINE, written out so that inspect can read it.
    def command(self, *parts, Py_ssize_t limit=512):
        """Queue the command line made of ``parts`` joined by spaces, and CRLF.

        Every check runs before anything is queued. Error messages name the
        verb only, never an argument, which may be a credential. Raises
        ValueError for no parts, CR, LF or NUL in a part, or a line longer than
        ``limit`` with its CRLF (RFC 5321 §4.5.3.1.4); TypeError for a part
        that is not bytes.
        """
        cdef Py_ssize_t i, n = len(parts)

        if _command_length(parts) > limit:
            raise ValueError(
                f"{_command_name(parts)} longer than {limit} octets")

        for i in range(n):
            if i:
                self._put(b" ", 1)
            part = parts[i]
            self._put(PyBytes_AS_STRING(part), PyBytes_GET_SIZE(part))
        self._put(b"\r\n", 2)

    def write(self, data):
        """Queue octets as they are, as for a BDAT chunk (RFC 3030 §2).

        Data that does not fit in the free space goes to the sink at once,
        behind the buffered octets and in the same call, without being copied.
        Raises TypeError if ``data`` is not a bytes-like object.
        """
        cdef Py_buffer view
        cdef bint fits

        _get_buffer(data, &view)
        fits = view.len <= self._size - self._pos
        if fits:
            memcpy(self._buf + self._pos, view.buf, <size_t>view.len)
            self._pos += view.len
        PyBuffer_Release(&view)
        if not fits:
            self._queue_buffered()
            self._append(data)
            self._flush()

    def begin_data(self):
        """Start new message content: reset the dot-stuffing state."""
        self._data.at_line_start = True
        self._data.skip_lf = False

    def write_data(self, data):
        """Queue the next chunk of message content, dot-stuffed.

        RFC 5321 §4.5.2. The emitter keeps no reference to ``data`` once this
        returns. Raises TypeError if ``data`` is not a bytes-like object.
        """
        cdef Py_buffer view
        cdef Scan sc
        cdef Py_ssize_t a, b
        cdef int code

        _get_buffer(data, &view)
        try:
            if view.len >= _WHOLE_CHUNK:
                # A large chunk is encoded whole and sent in one piece: for
                # text with bare LF that is one copy instead of two pieces a
                # line. Content that needs no change comes back as the
                # caller's own object, and goes without a copy.
                encoded = _encode(&self._data, data, &view)
                self._queue_buffered()
                self._append(encoded)
                self._flush()
                return
            _scan_init(&sc, &self._data, view.buf, view.len)
            while True:
                code = _next_run(&sc, &a, &b)
                if b - a >= self._zero_copy:
                    self._queue_input(<const char *>sc.src + a, b - a)
                elif b > a:
                    self._put(<const char *>sc.src + a, b - a)
                if code == _END:
                    break
                if code == _DOT:
                    self._put(b".", 1)
                else:
                    self._put(b"\r\n", 2)
            self._data = sc.state
            # Queued pieces show the caller's chunk: send them before it is
            # handed back.
            if self._pieces is not None:
                self._flush()
        finally:
            PyBuffer_Release(&view)
            if self._pieces is not None:
                # Only after an error: the queue is incomplete and may show
                # the chunk.
                self._pieces = None
                self._pos = self._mark = 0

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
        self._flush()

    cdef int _put(self, const char *src, Py_ssize_t n) except -1:
        if n <= self._size - self._pos:
            memcpy(self._buf + self._pos, src, <size_t>n)
            self._pos += n
            return 0
        return self._put_slow(src, n)

    cdef int _put_slow(self, const char *src, Py_ssize_t n) except -1:
        # Fills the buffer and sends each time it is full: the buffer never
        # grows, so a long command leaves in several sink calls.
        cdef Py_ssize_t k

        while n > 0:
            if self._pos == self._size:
                self._flush()
            k = min(n, self._size - self._pos)
            memcpy(self._buf + self._pos, src, <size_t>k)
            self._pos += k
            src += k
            n -= k
        SMTPC_INVARIANT(self._mark <= self._pos <= self._size)
        return 0

    cdef int _append(self, object piece) except -1:
        if self._pieces is None:
            self._pieces = [piece]
        else:
            self._pieces.append(piece)
        return 0

    cdef int _queue_input(self, const char *src, Py_ssize_t n) except -1:
        # A run of input joins the queue as a view, behind a view of whatever
        # the buffer gathered since the last piece; _flush() may add one more.
        if (self._pieces is not None
                and PyList_GET_SIZE(self._pieces) + 3 > _MAX_PIECES):
            self._flush()
        self._queue_buffered()
        self._append(PyMemoryView_FromMemory(<char *>src, n, PyBUF_READ))
        return 0

    cdef int _queue_buffered(self) except -1:
        # The octets gathered since the last piece join the queue. A few
        # octets, such as the CRLF between two lines of LF text, leave as a
        # small bytes object, which costs less than a view and frees their
        # space at once; more leave as a view, and stay untouched until the
        # sink has been called.
        cdef Py_ssize_t n = self._pos - self._mark
        cdef const char *p = self._buf + self._mark

        if n == 0:
            return 0
        if n == 2 and p[0] == c'\r' and p[1] == c'\n':
            self._append(b"\r\n")
        elif n <= _SMALL_PIECE:
            self._append(PyBytes_FromStringAndSize(p, n))
        else:
            self._append(PyMemoryView_FromMemory(<char *>p, n, PyBUF_READ))
            self._mark = self._pos
            return 0
        self._pos = self._mark
        return 0

    cdef int _flush(self) except -1:
        cdef list pieces

        self._queue_buffered()
        pieces = self._pieces
        if pieces is None:
            return 0
        SMTPC_INVARIANT(PyList_GET_SIZE(pieces) <= _MAX_PIECES)

        # The queue is emptied before the call: once the sink has them, the
        # octets count as sent even if it raises.
        self._pieces = None
        self._pos = self._mark = 0
        self._sink(pieces)
        return 0


cdef Py_ssize_t _command_length(tuple parts) except -1:
    # The length of the command line with its CRLF, once every part has
    # passed check_argument().
    cdef Py_ssize_t i, n = len(parts)
    cdef Py_ssize_t length = n + 1

    if n == 0:
        raise ValueError("empty command")
    for i in range(n):
        part = parts[i]
        if not PyBytes_Check(part):
            _require_bytes(part, _command_name(parts) if i else "command")
        if _has_line_break(part):
            raise ValueError(_command_name(parts) + " contains CR, LF or NUL")
        length += PyBytes_GET_SIZE(part)
    return length


cdef str _command_name(tuple parts):
    # Only the verb: an argument may be a credential.
    return parts[0].split(b" ", 1)[0].decode("ascii", "replace") + " command"


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
    cdef Py_buffer view
    cdef uint32_t state[4]
    cdef unsigned char tail[128]
    cdef unsigned char out[16]
    cdef const unsigned char *src
    cdef Py_ssize_t n, done, rest, padded
    cdef uint64_t bits
    cdef int i

    _get_buffer(data, &view)
    try:
        src = <const unsigned char *>view.buf
        n = view.len
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
    finally:
        PyBuffer_Release(&view)

    for i in range(16):
        out[i] = <unsigned char>(state[i // 4] >> (8 * (i % 4)))
    return PyBytes_FromStringAndSize(<char *>out, 16)
