#pragma once
// CURVE keys (ZeroMQ's elliptic-curve encryption and authentication) and their files.
//
// A key pair file (NAME.key, written with mode 0600 by tandem_keygen) and a public key
// file (NAME.pub) hold Z85-encoded keys:
//     public-key = "<40 Z85 characters>"
//     secret-key = "<40 Z85 characters>"        (NAME.key only)
// An authorized-keys file lists the edges a cloud accepts: one key per line, either bare or
// as a `public-key = "..."` line (so edge .pub files can simply be concatenated); `#` starts
// a comment.

#include <string>
#include <vector>

namespace tandem::transport {

struct CurveKeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;
};

bool isZ85Key(const std::string& key);
CurveKeyPair generateCurveKeyPair();

// Writes DIR/NAME.key (0600) and DIR/NAME.pub; refuses to overwrite unless `force`.
// Returns the key pair. Throws tandem::Error on I/O failure.
CurveKeyPair writeCurveKeyFiles(const std::string& directory, const std::string& name, bool force);

// Throw ConfigError naming the file (and line) on a missing, malformed, or — for a
// secret key — group- or world-readable file.
CurveKeyPair readCurveKeyPair(const std::string& path);
std::string readCurvePublicKey(const std::string& path);
std::vector<std::string> readAuthorizedKeys(const std::string& path);

}  // namespace tandem::transport
