#include "client/steadctl_txn.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/status_macros.h"
#include "client/steadctl_io.h"

namespace stead::ctl {

const char kTxnSyntaxHelp[] =
    "Runs one transaction, atomically at one revision: if every --if condition holds,\n"
    "the --then operations, else the --else operations, each in the order given.\n"
    "\n"
    "conditions (--if, all must hold; none: the --then branch runs):\n"
    "  value(KEY) OP VALUE       OP is = (or ==), !=, > or <; values compare as bytes;\n"
    "                            an absent key never matches, not even !=\n"
    "  version(KEY) OP N         writes since the key was created; 0: absent\n"
    "  create(KEY) OP N          revision that created the key; 0: absent\n"
    "  mod(KEY) OP N             revision of the last write to the key; 0: absent\n"
    "  exists(KEY)   !exists(KEY)\n"
    "  TARGET(KEY, RANGE_END)    the condition on every key of [KEY, RANGE_END)\n"
    "  (create_revision and mod_revision are accepted for create and mod)\n"
    "\n"
    "operations (--then, --else):\n"
    "  put KEY VALUE             set KEY to VALUE\n"
    "  put KEY --value-file=PATH set KEY to every byte of the file PATH (a bare word,\n"
    "                            so no spaces), e.g. /dev/stdin; a literal value that\n"
    "                            starts with --value-file= is written in quotes\n"
    "  del KEY [RANGE_END]       delete KEY, or every key of [KEY, RANGE_END)\n"
    "  get KEY [RANGE_END]       read KEY, or the keys of [KEY, RANGE_END); reads see the\n"
    "                            branch's earlier writes\n"
    "\n"
    "Words are separated by spaces, and in conditions also by ( ) , = ! < >. A word\n"
    "with any of those characters, a quote or nothing in it is written in double\n"
    "quotes, where \\\" \\\\ \\n \\r \\t and \\xHH are escapes:\n"
    "  put k \"a b\"   value(\"k(1)\") = \"\"   get a \"\\x00\" (every key >= a)\n"
    "\n"
    "Output: SUCCEEDED or FAILED (which branch ran) and the store revision, then one\n"
    "line per operation, each get followed by its keys (KEY TAB VALUE, escaped as\n"
    "steadctl scan --help says); with --output=json one object. Exit 0 when the\n"
    "conditions held, 4 when they did not (the --else branch ran), 2 for a syntax\n"
    "error or a --value-file that cannot be read.\n";

namespace {

// Characters that end a bare word in a condition and form its punctuation.
constexpr absl::string_view kPunctuation = "(),=!<>";

// A bare word of a put's VALUE with this prefix names the file holding the value.
constexpr absl::string_view kValueFilePrefix = "--value-file=";

struct Token {
  std::string text;
  bool punctuation = false;  // one of ( ) , = == != > < >= <= !
  bool quoted = false;       // a word written in double quotes
  size_t column = 0;         // 1-based, of the token's first character
};

bool IsSpace(char ch) { return std::isspace(static_cast<unsigned char>(ch)) != 0; }

absl::Status SyntaxError(size_t column, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(message, " at column ", column));
}

// The value of a hex digit; -1 for another character.
int HexDigit(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

// Reads the quoted word that starts at text[*pos] == '"' into `word`; *pos ends after
// the closing quote.
absl::Status ReadQuoted(absl::string_view text, size_t* pos, std::string* word) {
  const size_t start = *pos;
  for (size_t i = start + 1; i < text.size(); ++i) {
    const char ch = text[i];
    if (ch == '"') {
      *pos = i + 1;
      return absl::OkStatus();
    }
    if (ch != '\\') {
      *word += ch;
      continue;
    }
    if (i + 1 >= text.size()) break;
    const char escape = text[++i];
    switch (escape) {
      case '"':
      case '\\':
        *word += escape;
        break;
      case 'n':
        *word += '\n';
        break;
      case 'r':
        *word += '\r';
        break;
      case 't':
        *word += '\t';
        break;
      case 'x': {
        const int high = i + 1 < text.size() ? HexDigit(text[i + 1]) : -1;
        const int low = i + 2 < text.size() ? HexDigit(text[i + 2]) : -1;
        if (high < 0 || low < 0) return SyntaxError(i, "\\x needs two hex digits");
        *word += static_cast<char>(high * 16 + low);
        i += 2;
        break;
      }
      default:
        return SyntaxError(i, absl::StrCat("unknown escape \\", std::string(1, escape)));
    }
  }
  return SyntaxError(start + 1, "unterminated quote");
}

// Splits `text` into words and, when `punctuation` (conditions), punctuation tokens.
absl::StatusOr<std::vector<Token>> Tokenize(absl::string_view text, bool punctuation) {
  std::vector<Token> tokens;
  auto is_punctuation = [&](char ch) {
    return punctuation && kPunctuation.find(ch) != absl::string_view::npos;
  };
  size_t pos = 0;
  while (pos < text.size()) {
    if (IsSpace(text[pos])) {
      ++pos;
      continue;
    }
    Token token;
    token.column = pos + 1;
    if (is_punctuation(text[pos])) {
      token.punctuation = true;
      token.text = std::string(text.substr(pos, 1));
      ++pos;
      // The two-character operators: == != >= <= (the last two only to refuse them).
      if (token.text != "(" && token.text != ")" && token.text != "," && pos < text.size() &&
          text[pos] == '=') {
        token.text += '=';
        ++pos;
      }
    } else if (text[pos] == '"') {
      token.quoted = true;
      STEAD_RETURN_IF_ERROR(ReadQuoted(text, &pos, &token.text));
      if (pos < text.size() && !IsSpace(text[pos]) && !is_punctuation(text[pos])) {
        return SyntaxError(pos + 1, "a quoted word must end before another word begins");
      }
    } else {
      while (pos < text.size() && !IsSpace(text[pos]) && !is_punctuation(text[pos])) {
        if (text[pos] == '"') {
          return SyntaxError(pos + 1, "a quote inside a word (quote the whole word)");
        }
        token.text += text[pos++];
      }
    }
    tokens.push_back(std::move(token));
  }
  return tokens;
}

// Walks the tokens of one condition or operation; errors name what was expected.
class Cursor {
 public:
  Cursor(std::vector<Token> tokens, size_t text_size)
      : tokens_(std::move(tokens)), end_column_(text_size + 1) {}

  bool AtEnd() const { return next_ >= tokens_.size(); }
  size_t column() const { return AtEnd() ? end_column_ : tokens_[next_].column; }

  // Takes the punctuation `text` if it comes next.
  bool TakePunctuation(absl::string_view text) {
    if (AtEnd() || !tokens_[next_].punctuation || tokens_[next_].text != text) return false;
    ++next_;
    return true;
  }

  absl::StatusOr<std::string> TakePunctuation() {
    if (AtEnd() || !tokens_[next_].punctuation) return Unexpected("an operator");
    return tokens_[next_++].text;
  }

  // Takes the next word (bare or quoted); `what` names it in the error.
  absl::StatusOr<std::string> TakeWord(absl::string_view what) {
    if (AtEnd() || tokens_[next_].punctuation) return Unexpected(what);
    return tokens_[next_++].text;
  }

  absl::Status Expect(absl::string_view punctuation) {
    if (TakePunctuation(punctuation)) return absl::OkStatus();
    return Unexpected(absl::StrCat("'", punctuation, "'"));
  }

  absl::Status ExpectEnd() {
    if (AtEnd()) return absl::OkStatus();
    return Unexpected("the end");
  }

  absl::Status Unexpected(absl::string_view what) const {
    const std::string found =
        AtEnd() ? std::string("the end") : absl::StrCat("'", tokens_[next_].text, "'");
    return SyntaxError(column(), absl::StrCat("expected ", what, ", found ", found));
  }

 private:
  const std::vector<Token> tokens_;
  const size_t end_column_;
  size_t next_ = 0;
};

std::optional<Compare::Target> TargetNamed(absl::string_view name) {
  if (name == "value") return Compare::Target::kValue;
  if (name == "version") return Compare::Target::kVersion;
  if (name == "create" || name == "create_revision") return Compare::Target::kCreateRevision;
  if (name == "mod" || name == "mod_revision") return Compare::Target::kModRevision;
  if (name == "exists") return Compare::Target::kExists;
  return std::nullopt;
}

std::optional<Compare::Result> ResultNamed(absl::string_view op) {
  if (op == "=" || op == "==") return Compare::Result::kEqual;
  if (op == "!=") return Compare::Result::kNotEqual;
  if (op == ">") return Compare::Result::kGreater;
  if (op == "<") return Compare::Result::kLess;
  return std::nullopt;
}

absl::Status CheckKeyNotEmpty(absl::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("the key is empty");
  return absl::OkStatus();
}

// `TARGET(KEY[, RANGE_END]) OP OPERAND` after the target's name.
absl::Status ParseCompareRest(Cursor& cursor, Compare* compare) {
  const size_t op_column = cursor.column();
  absl::StatusOr<std::string> op = cursor.TakePunctuation();
  if (!op.ok()) return cursor.Unexpected("an operator (= != > <)");
  std::optional<Compare::Result> result = ResultNamed(*op);
  if (!result.has_value()) {
    return SyntaxError(op_column, absl::StrCat("'", *op, "' is not an operator; use = != > <"));
  }
  compare->result = *result;
  const size_t operand_column = cursor.column();
  STEAD_ASSIGN_OR_RETURN(
      std::string operand,
      cursor.TakeWord(compare->target == Compare::Target::kValue ? "a value" : "a number"));
  if (compare->target == Compare::Target::kValue) {
    compare->value = std::move(operand);
  } else if (!absl::SimpleAtoi(operand, &compare->number) || compare->number < 0) {
    return SyntaxError(operand_column, absl::StrCat("'", operand, "' is not a number >= 0"));
  }
  return cursor.ExpectEnd();
}

absl::StatusOr<Compare> ParseCompareTokens(Cursor& cursor) {
  Compare compare;
  const bool negated = cursor.TakePunctuation("!");
  const size_t target_column = cursor.column();
  STEAD_ASSIGN_OR_RETURN(const std::string name,
                         cursor.TakeWord("value, version, create, mod or exists"));
  std::optional<Compare::Target> target = TargetNamed(name);
  if (!target.has_value()) {
    return SyntaxError(target_column, absl::StrCat("unknown target '", name,
                                                   "' (value, version, create, mod, exists)"));
  }
  if (negated && *target != Compare::Target::kExists) {
    return SyntaxError(1, "'!' negates only exists(KEY)");
  }
  compare.target = *target;
  STEAD_RETURN_IF_ERROR(cursor.Expect("("));
  STEAD_ASSIGN_OR_RETURN(compare.key, cursor.TakeWord("KEY"));
  if (cursor.TakePunctuation(",")) {
    STEAD_ASSIGN_OR_RETURN(compare.range_end, cursor.TakeWord("RANGE_END"));
  }
  STEAD_RETURN_IF_ERROR(cursor.Expect(")"));
  if (compare.target == Compare::Target::kExists) {
    compare.exists = !negated;
    STEAD_RETURN_IF_ERROR(cursor.ExpectEnd());
  } else {
    STEAD_RETURN_IF_ERROR(ParseCompareRest(cursor, &compare));
  }
  STEAD_RETURN_IF_ERROR(CheckKeyNotEmpty(compare.key));
  return compare;
}

}  // namespace

absl::StatusOr<Compare> ParseCompare(absl::string_view text) {
  STEAD_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(text, /*punctuation=*/true));
  Cursor cursor(std::move(tokens), text.size());
  return ParseCompareTokens(cursor);
}

absl::StatusOr<TxnOp> ParseTxnOp(absl::string_view text, ValueFileReader read_value_file) {
  STEAD_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(text, /*punctuation=*/false));
  if (tokens.empty()) return absl::InvalidArgumentError("empty operation (put, del or get)");
  const std::string& verb = tokens[0].text;
  const size_t word_count = tokens.size() - 1;
  TxnOp op;
  if (verb == "put") {
    if (word_count != 2) {
      return absl::InvalidArgumentError(absl::StrCat("put takes KEY VALUE, not ", word_count,
                                                     " words (quote a value with spaces)"));
    }
    const Token& value = tokens[2];
    if (!value.quoted && absl::StartsWith(value.text, kValueFilePrefix)) {
      const std::string path = value.text.substr(kValueFilePrefix.size());
      if (path.empty()) return absl::InvalidArgumentError("--value-file needs a PATH");
      STEAD_ASSIGN_OR_RETURN(std::string bytes, read_value_file(path));
      op = TxnOp::Put(tokens[1].text, std::move(bytes));
    } else {
      op = TxnOp::Put(tokens[1].text, value.text);
    }
  } else if (verb == "del" || verb == "delete" || verb == "get") {
    if (word_count != 1 && word_count != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(verb, " takes KEY [RANGE_END], not ", word_count, " words"));
    }
    const std::string range_end = word_count == 2 ? tokens[2].text : "";
    op = verb == "get" ? TxnOp::Get(tokens[1].text, range_end)
                       : TxnOp::Delete(tokens[1].text, range_end);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown operation '", verb, "' (put, del or get)"));
  }
  STEAD_RETURN_IF_ERROR(CheckKeyNotEmpty(op.key));
  return op;
}

absl::StatusOr<TxnRequest> ParseTxn(const std::vector<std::string>& ifs,
                                    const std::vector<std::string>& thens,
                                    const std::vector<std::string>& elses,
                                    ValueFileReader read_value_file) {
  if (ifs.empty() && thens.empty() && elses.empty()) {
    return absl::InvalidArgumentError("txn needs --if, --then or --else (see steadctl txn --help)");
  }
  // "--if #2 'value(k) ~ v'": the flag, its place among its kind, and its text.
  auto context = [](absl::string_view flag, size_t i, absl::string_view text) {
    return absl::StrCat(flag, " #", i + 1, " '", text, "'");
  };
  TxnRequest request;
  for (size_t i = 0; i < ifs.size(); ++i) {
    STEAD_ASSIGN_OR_RETURN(Compare compare,
                           Annotate(ParseCompare(ifs[i]), context("--if", i, ifs[i])));
    request.compare.push_back(std::move(compare));
  }
  auto parse_ops = [&](absl::string_view flag, const std::vector<std::string>& texts,
                       std::vector<TxnOp>* ops) -> absl::Status {
    for (size_t i = 0; i < texts.size(); ++i) {
      STEAD_ASSIGN_OR_RETURN(TxnOp op, Annotate(ParseTxnOp(texts[i], read_value_file),
                                                context(flag, i, texts[i])));
      ops->push_back(std::move(op));
    }
    return absl::OkStatus();
  };
  STEAD_RETURN_IF_ERROR(parse_ops("--then", thens, &request.success));
  STEAD_RETURN_IF_ERROR(parse_ops("--else", elses, &request.failure));
  return request;
}

std::string QuoteWord(absl::string_view word) {
  const std::string escaped = EscapeBytes(word);
  const bool bare = !word.empty() && escaped == word && !absl::StartsWith(word, kValueFilePrefix) &&
                    std::none_of(word.begin(), word.end(),
                                 [](char ch) { return ch == '"' || IsSpace(ch); });
  if (bare) return std::string(word);
  return absl::StrCat("\"", absl::StrReplaceAll(escaped, {{"\"", "\\\""}}), "\"");
}

std::string FormatTxnOp(const TxnOp& op) {
  const std::string range_end = op.range_end.empty() ? "" : " " + QuoteWord(op.range_end);
  switch (op.kind) {
    case TxnOp::Kind::kPut:
      return absl::StrCat("put ", QuoteWord(op.key), " ", QuoteWord(op.value));
    case TxnOp::Kind::kDelete:
      return absl::StrCat("del ", QuoteWord(op.key), range_end);
    case TxnOp::Kind::kGet:
      return absl::StrCat("get ", QuoteWord(op.key), range_end);
  }
  return "?";
}

}  // namespace stead::ctl
