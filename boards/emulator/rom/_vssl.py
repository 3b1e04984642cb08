# ssl as on the esp32 and rp2 ports (extmod/modtls_mbedtls.c): an SSLContext whose wrap_socket()
# completes the handshake at once. The TLS itself runs on the host (Python's ssl on the
# bridged socket), as it runs in C (mbedTLS) on a board: the firmware's calls are the same.
import _board as _b
import _vsocket

# What mbedTLS holds for an open session on the MicroPython heap. rp2 builds mbedTLS bare-metal
# with its allocator on that heap (extmod/mbedtls/mbedtls_config_common.h:
# MBEDTLS_PLATFORM_STD_CALLOC is m_tracked_calloc, py/malloc.c), with a 16 KB input and a 4 KB
# output record buffer (MBEDTLS_SSL_IN_CONTENT_LEN 16384, MBEDTLS_SSL_OUT_CONTENT_LEN 4096),
# each with the record's header, IV, MAC and padding room: 16,725 bytes for the input one, as a
# board reports when it cannot find them ("allocating 16725 bytes", micropython#7878), and the
# same 341 bytes on the output one. The esp32 port takes mbedTLS from ESP-IDF, whose buffers are
# in the IDF heap, not MicroPython's (micropython#6065): nothing there. Not charged on either:
# the handshake's transient state and the session's smaller structures (their size depends on
# the build; docs/emulator.md "Heap and the RAM budget").
_TLS_HEAP = _b.cfg["tls_heap"]  # the board definition's tls_heap: 16,725 + 4,096 + 341 on rp2

PROTOCOL_TLS_CLIENT = 0
PROTOCOL_TLS_SERVER = 1
CERT_NONE = 0
CERT_OPTIONAL = 1
CERT_REQUIRED = 2
MBEDTLS_VERSION = "Mbed TLS 3.6.2"


class SSLContext:
    def __init__(self, protocol):
        if protocol != PROTOCOL_TLS_CLIENT:
            raise ValueError("only PROTOCOL_TLS_CLIENT is emulated")
        # modtls_mbedtls.c: a client verifies the server unless told otherwise.
        self.verify_mode = CERT_REQUIRED
        self._ca = None

    def load_verify_locations(self, cafile=None, cadata=None):
        if cafile is not None:
            with open(cafile, "rb") as f:
                cadata = f.read()
        self._ca = bytes(cadata)

    def load_cert_chain(self, certfile, keyfile):
        raise OSError(95)  # client certificates are not emulated

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                    server_hostname=None):
        ca = self._ca.hex() if self._ca is not None else None
        _vsocket._op("tls", s=sock._io_id, v=self.verify_mode, ca=ca, h=server_hostname,
                     t=sock._t())
        if _TLS_HEAP:
            sock._tls = bytearray(_TLS_HEAP)  # until the socket is closed (or dropped)
        return sock  # the same stream, now encrypted on the host side


def wrap_socket(sock, server_side=False, key=None, cert=None, cert_reqs=CERT_NONE,
                cadata=None, server_hostname=None, do_handshake=True):
    ctx = SSLContext(PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = cert_reqs
    if cadata is not None:
        ctx.load_verify_locations(cadata=cadata)
    return ctx.wrap_socket(sock, server_hostname=server_hostname)
