// Status propagation helpers (our abseil has none).
//
//   absl::Status Open() {
//     STEAD_RETURN_IF_ERROR(OpenSegment(path));
//     STEAD_ASSIGN_OR_RETURN(Header header, ReadHeader(file));
//     ...
//   }
//
// Add context on the way up with Annotate():
//   STEAD_RETURN_IF_ERROR(Annotate(ReadRecord(f), "wal segment 000042.log"));
#ifndef STEAD_BASE_STATUS_MACROS_H_
#define STEAD_BASE_STATUS_MACROS_H_

#include "absl/strings/string_view.h"
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace stead {

// Returns `status` with "context: " prepended to its message, keeping its code and
// payloads. OK stays OK.
inline absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  absl::Status annotated(status.code(), absl::StrCat(context, ": ", status.message()));
  status.ForEachPayload([&annotated](absl::string_view type_url, const absl::Cord& payload) {
    annotated.SetPayload(type_url, payload);
  });
  return annotated;
}

template <typename T>
absl::StatusOr<T> Annotate(absl::StatusOr<T> result, absl::string_view context) {
  if (result.ok()) return result;
  return Annotate(result.status(), context);
}

namespace internal {
inline const absl::Status& AsStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& AsStatus(const absl::StatusOr<T>& result) {
  return result.status();
}
}  // namespace internal

}  // namespace stead

#define STEAD_STATUS_CONCAT_INNER_(a, b) a##b
#define STEAD_STATUS_CONCAT_(a, b) STEAD_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status or absl::StatusOr) once and returns its status from
// the enclosing function when it is not OK.
#define STEAD_RETURN_IF_ERROR(expr)                                                 \
  do {                                                                              \
    /* Bind the result first: AsStatus() of a temporary would dangle. */            \
    auto&& stead_result_ = (expr);                                                  \
    if (const absl::Status& stead_status_ = ::stead::internal::AsStatus(stead_result_); \
        !stead_status_.ok()) {                                                      \
      return stead_status_;                                                         \
    }                                                                               \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, otherwise
// moves the value into `lhs`, which may be a declaration (`auto x`, `Foo x`) or an
// existing lvalue. Usable once per line.
#define STEAD_ASSIGN_OR_RETURN(lhs, rexpr) \
  STEAD_ASSIGN_OR_RETURN_IMPL_(STEAD_STATUS_CONCAT_(stead_statusor_, __LINE__), lhs, rexpr)

#define STEAD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // STEAD_BASE_STATUS_MACROS_H_
