// Writes CURVE key pairs for the edge–cloud link: DIR/NAME.key (secret, mode 0600) and
// DIR/NAME.pub (public).
//
//   tandem_keygen --out keys cloud edge1 edge2
//   cat keys/edge1.pub keys/edge2.pub > keys/authorized_edges
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>

#include "runtime/transport/curve.h"

int main(int argc, char** argv) {
  CLI::App cli("Tandem key generator: writes CURVE key pairs (NAME.key, mode 0600) and public keys (NAME.pub).",
               "tandem_keygen");
  std::string out = ".";
  std::vector<std::string> names;
  bool force = false;
  cli.add_option("-o,--out", out, "Directory for the key files (created if missing)")->type_name("DIR");
  cli.add_option("names", names, "One key pair per name, e.g. cloud edge1")->required();
  cli.add_flag("--force", force, "Replace existing key files");
  cli.footer("Cloud config: security.key_file = cloud.key, security.authorized_keys = a file of edge .pub lines.\n"
             "Edge config:  security.key_file = edge1.key, security.cloud_public_key_file = cloud.pub.");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return cli.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tandem_keygen: %s\nRun 'tandem_keygen --help' for usage.\n", e.what());
    return 2;
  }
  try {
    std::filesystem::create_directories(out);
    for (const auto& name : names) {
      if (name.empty() || name.find('/') != std::string::npos) {
        std::fprintf(stderr, "tandem_keygen: bad name '%s'\n", name.c_str());
        return 2;
      }
      const auto keys = tandem::transport::writeCurveKeyFiles(out, name, force);
      std::printf("%s/%s.key (secret, 0600)  %s/%s.pub  public-key %s\n", out.c_str(), name.c_str(), out.c_str(),
                  name.c_str(), keys.public_key.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem_keygen: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
