/* The client certificate chain of an HTTPS request, for EST re-enrollment
 * over mutual TLS: libmicrohttpd terminates TLS with GnuTLS, so the chain
 * the client sent is read from its session as DER and handed to OpenSSL. */
#include <gnutls/gnutls.h>

#include "api/handlers.h"

int api_peer_chain(struct api_req *r, X509 **leaf, STACK_OF(X509) * *rest)
{
    *leaf = NULL;
    *rest = NULL;
    if (!r->api->tls || !r->conn) return ERR_NOT_FOUND;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session) return ERR_NOT_FOUND;
    unsigned int n = 0;
    const gnutls_datum_t *certs =
        gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session, &n);
    if (!certs || n == 0) return ERR_NOT_FOUND;
    if (n > 16) return ERR_INVALID;
    *rest = sk_X509_new_null();
    ENSURE(*rest, ERR_NOMEM);
    for (unsigned int i = 0; i < n; i++) {
        const unsigned char *p = certs[i].data;
        X509 *x = d2i_X509(NULL, &p, (long)certs[i].size);
        if (!x) break;
        if (i == 0)
            *leaf = x;
        else if (!sk_X509_push(*rest, x))
            X509_free(x);
    }
    if (*leaf) return 0;
    sk_X509_pop_free(*rest, X509_free);
    *rest = NULL;
    return ERR_INVALID;
}
