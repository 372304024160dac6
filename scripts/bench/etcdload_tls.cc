// A preloaded library (LD_PRELOAD) that gives etcd's load generator, which only asks
// gRPC for plain channels, TLS channels instead: it defines
// grpc::InsecureChannelCredentials() itself, and the dynamic linker binds the program's
// call to this definition before libgrpc++'s. The credentials are mutual TLS built from
// PEM files named by the environment:
//
//   ETCDLOAD_TLS_CA    the CA that signed the servers' certificates (required)
//   ETCDLOAD_TLS_CERT  the client certificate  } both or neither; without them the
//   ETCDLOAD_TLS_KEY   its private key          } client presents no certificate
//
// A missing variable or unreadable file ends the process: falling back to plain would
// measure the wrong thing. Built by scripts/bench-tls:
//   g++ -std=c++17 -O2 -shared -fPIC etcdload_tls.cc -o etcdload_tls.so -lgrpc++
#include <grpcpp/security/credentials.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

namespace {

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "etcdload_tls: %s\n", message.c_str());
  std::exit(2);
}

// The contents of the file named by the environment variable `name`; "" when the
// variable is unset and `required` is false.
std::string ReadNamedFile(const char* name, bool required) {
  const char* path = std::getenv(name);
  if (path == nullptr || *path == '\0') {
    if (required) Fail(std::string(name) + " is not set");
    return "";
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  if (!in || contents.str().empty()) Fail(std::string("cannot read ") + path + " (" + name + ")");
  return contents.str();
}

grpc::SslCredentialsOptions OptionsFromEnvironment() {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadNamedFile("ETCDLOAD_TLS_CA", true);
  options.pem_cert_chain = ReadNamedFile("ETCDLOAD_TLS_CERT", false);
  options.pem_private_key = ReadNamedFile("ETCDLOAD_TLS_KEY", false);
  if (options.pem_cert_chain.empty() != options.pem_private_key.empty()) {
    Fail("set both ETCDLOAD_TLS_CERT and ETCDLOAD_TLS_KEY, or neither");
  }
  return options;
}

}  // namespace

namespace grpc {

// Every channel the program makes; the files are read once, at the first channel, so
// the measured loop never touches them.
std::shared_ptr<ChannelCredentials> InsecureChannelCredentials() {
  static const SslCredentialsOptions options = OptionsFromEnvironment();
  return SslCredentials(options);
}

}  // namespace grpc
