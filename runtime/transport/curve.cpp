#include "runtime/transport/curve.h"

#include <sys/stat.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/common/error.h"
#include "runtime/telemetry/summary.h"

namespace tandem::transport {
namespace {

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t\r");
  if (first == std::string::npos) return "";
  const auto last = s.find_last_not_of(" \t\r");
  return s.substr(first, last - first + 1);
}

// The key on a line: the quoted value of `name = "..."`, or the first word. Z85 keys may
// contain '#', '=' and other punctuation, so comments are whole lines starting with '#'
// or text after the key.
std::string keyOnLine(const std::string& raw) {
  const std::string line = trim(raw);
  if (line.empty() || line[0] == '#') return "";
  const auto open = line.find('"');
  if (open != std::string::npos) {
    const auto close = line.find('"', open + 1);
    return close == std::string::npos ? "" : line.substr(open + 1, close - open - 1);
  }
  return line.substr(0, line.find_first_of(" \t"));
}

// The value of the `name = "..."` line, or "".
std::string field(const std::string& path, const std::string& name) {
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read key file '" + path + "': " + std::strerror(errno));
  std::string line;
  while (std::getline(in, line)) {
    const std::string t = trim(line);
    if (t.rfind(name, 0) == 0) return keyOnLine(t);
  }
  return "";
}

}  // namespace

bool isZ85Key(const std::string& key) {
  if (key.size() != 40) return false;
  std::uint8_t bytes[32];
  return zmq_z85_decode(bytes, key.c_str()) != nullptr;
}

CurveKeyPair generateCurveKeyPair() {
  char public_key[41] = {0};
  char secret_key[41] = {0};
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    throw Error(std::string("cannot generate a CURVE key pair: ") + zmq_strerror(zmq_errno()) +
                " (libzmq built without CURVE?)");
  }
  return {public_key, secret_key};
}

CurveKeyPair writeCurveKeyFiles(const std::string& directory, const std::string& name, bool force) {
  namespace fs = std::filesystem;
  const auto secret_path = fs::path(directory) / (name + ".key");
  const auto public_path = fs::path(directory) / (name + ".pub");
  if (!force && (fs::exists(secret_path) || fs::exists(public_path))) {
    throw Error("'" + secret_path.string() + "' or its .pub already exists (use --force to replace)");
  }
  const auto keys = generateCurveKeyPair();
  const std::string header = "# Tandem CURVE key pair for '" + name + "', written by tandem_keygen.\n";
  telemetry::writeFileAtomically(public_path.string(), "# Tandem CURVE public key for '" + name +
                                                           "': give it to the peer.\npublic-key = \"" +
                                                           keys.public_key + "\"\n");
  telemetry::writeFileAtomically(secret_path.string(), header + "# Keep this file secret.\npublic-key = \"" +
                                                           keys.public_key + "\"\nsecret-key = \"" + keys.secret_key +
                                                           "\"\n");
  if (::chmod(secret_path.c_str(), 0600) != 0) {
    throw Error("cannot set 0600 on '" + secret_path.string() + "': " + std::strerror(errno));
  }
  return keys;
}

CurveKeyPair readCurveKeyPair(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw ConfigError("cannot read key file '" + path + "': " + std::strerror(errno));
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", static_cast<unsigned>(st.st_mode & 0777));
    throw ConfigError("secret key file '" + path + "' is accessible to other users (mode " + mode +
                      "); run chmod 600 on it");
  }
  CurveKeyPair keys{field(path, "public-key"), field(path, "secret-key")};
  if (!isZ85Key(keys.secret_key)) throw ConfigError("'" + path + "' has no valid secret-key (40 Z85 characters)");
  if (!isZ85Key(keys.public_key)) throw ConfigError("'" + path + "' has no valid public-key (40 Z85 characters)");
  char derived[41] = {0};
  if (zmq_curve_public(derived, keys.secret_key.c_str()) != 0 || keys.public_key != derived) {
    throw ConfigError("'" + path + "': the public key does not belong to the secret key");
  }
  return keys;
}

std::string readCurvePublicKey(const std::string& path) {
  const auto key = field(path, "public-key");
  if (!isZ85Key(key)) throw ConfigError("'" + path + "' has no valid public-key (40 Z85 characters)");
  return key;
}

std::vector<std::string> readAuthorizedKeys(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read authorized keys '" + path + "': " + std::strerror(errno));
  std::vector<std::string> keys;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("secret-key", 0) == 0) {
      throw ConfigError(path + ":" + std::to_string(number) + ": a secret key in an authorized-keys file");
    }
    const std::string key = keyOnLine(line);
    if (!isZ85Key(key)) throw ConfigError(path + ":" + std::to_string(number) + ": not a Z85 public key");
    keys.push_back(key);
  }
  if (keys.empty()) throw ConfigError("authorized keys '" + path + "' lists no key: no edge could connect");
  return keys;
}

}  // namespace tandem::transport
