/* certmq pki: the PKI tooling (CA, intermediate, device and server
 * certificates, keystores, truststores, revocation, inspection) as one
 * command per step, built on the OpenSSL library. This header is the whole
 * interface of the module: the CLI entry point and the development-PKI
 * bootstrap the server runs when it starts without a configuration. */
#ifndef CERTMQ_PKI_H
#define CERTMQ_PKI_H

#include "core/err.h"

/* Runs `certmq pki ...`; argv[0] is "pki". Prints to stdout/stderr and
 * returns the process exit code: 0 ok, 1 refused or failed, 2 usage. */
int pki_main(int argc, char **argv);

/* Makes the development PKI in dir unless dir/ca.pem exists: dir (0700) with
 * a CA as `pki ca init dir --cn "certmq dev CA" --key ec:P-256` makes it
 * (ca.pem, ca.key 0600, chain.pem, serial, index.txt, crlnumber, crl.pem), then a
 * server certificate for CN localhost with SAN DNS:localhost, IP:127.0.0.1,
 * IP:::1 in dir/server.pem (certificate then CA) and dir/server.key (0600).
 * Idempotent: an existing CA is reused, an existing server.pem kept.
 * Returns 0 or a negative enum err code; failures are also reported on
 * stderr. */
MUST_USE int pki_dev_bootstrap(const char *dir);

#endif
