// Reading and writing the plain-text .dcace potential file (docs/potential-format.md).
// Strict: every record is checked in order, every number must parse completely and be finite,
// and every error names the file and line.  Numbers are written with %.17g: exact round trip.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <string>
#include <vector>

#include "dcace/potential.hpp"

namespace dcace {

namespace {

constexpr int kFormatVersion = 8;  // 1 original; 2 short-range core (core_range, baseline zbl); 3 extrapolation
                                   // grade; 4 level shifts of the pair core (core_shift); 5 chemical channels
                                   // (species-embedded basis); 6 atom gate; 7 neighbourhood gate; 8 density
                                   // wall (core_wall)
constexpr const char* kMagic = "dcace-potential";

// Length of the valid UTF-8 prefix of s (s.size() if all of s is valid UTF-8).
size_t utf8_prefix(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;  // continuation bytes
    unsigned long cp;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xe0) == 0xc0) { n = 1; cp = c & 0x1f; }
    else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0f; }
    else if ((c & 0xf8) == 0xf0) { n = 3; cp = c & 0x07; }
    else return i;
    if (i + n >= s.size()) return i;  // sequence cut by the end of the text
    for (size_t k = 1; k <= n; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    static const unsigned long lowest[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < lowest[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;  // overlong, surrogate
    i += n + 1;
  }
  return i;
}

// s with invalid UTF-8 and control bytes written as \xNN (error messages must be valid text).
std::string printable(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const size_t ok = utf8_prefix(s.substr(i));
    for (size_t k = i; k < i + ok; ++k) {
      const unsigned char c = static_cast<unsigned char>(s[k]);
      if (c < 0x20 || c == 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
      } else {
        out += s[k];
      }
    }
    i += ok;
    if (i < s.size()) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(s[i]));
      out += buf;
      ++i;
    }
  }
  return out;
}

// Decimal floating-point syntax of docs/potential-format.md: [-]digits[.digits][(e|E)[+|-]digits]
// (or [-].digits...); no hex, inf, nan, leading '+' or white space.
bool decimal_syntax(const std::string& w) {
  size_t i = 0, n = w.size();
  if (i < n && w[i] == '-') ++i;
  size_t d = 0;
  while (i < n && w[i] >= '0' && w[i] <= '9') ++i, ++d;
  if (i < n && w[i] == '.') {
    ++i;
    while (i < n && w[i] >= '0' && w[i] <= '9') ++i, ++d;
  }
  if (d == 0) return false;
  if (i < n && (w[i] == 'e' || w[i] == 'E')) {
    ++i;
    if (i < n && (w[i] == '+' || w[i] == '-')) ++i;
    size_t e = 0;
    while (i < n && w[i] >= '0' && w[i] <= '9') ++i, ++e;
    if (e == 0) return false;
  }
  return i == n;
}

// Integer syntax: plain decimal digits, optionally preceded by '-'.
bool integer_syntax(const std::string& w) {
  size_t i = w.size() > 1 && w[0] == '-' ? 1 : 0;
  if (i == w.size()) return false;
  for (; i < w.size(); ++i)
    if (w[i] < '0' || w[i] > '9') return false;
  return true;
}

class Reader {
 public:
  Reader(const std::string& text, std::string name) : name_(std::move(name)) {
    std::istringstream in(text);
    std::string line;
    int no = 0;
    while (std::getline(in, line)) {
      ++no;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const size_t nul = line.find('\0');
      if (nul != std::string::npos) {
        last_no_ = no;
        fail("NUL byte in column " + std::to_string(nul + 1) + " (the file is binary or corrupted)");
      }
      size_t a = line.find_first_not_of(" \t");
      if (a == std::string::npos || line[a] == '#') continue;
      lines_.push_back({no, line});
    }
  }

  // Errors name the line last looked at (or the line after the last one at end of file).
  [[noreturn]] void fail(const std::string& msg) const {
    throw FileError(name_ + ":" + std::to_string(last_no_) + ": " + printable(msg));
  }
  // A count announced by the current record cannot exceed the lines left in the file (each item
  // takes one line): checked before anything is allocated for the items.
  void check_count(long count, long per_line, const std::string& what) const {
    const long left = static_cast<long>(lines_.size() - std::min(pos_, lines_.size()));
    if (count > 0 && (count + per_line - 1) / per_line > left)
      fail("unexpected end of file: " + what + " " + std::to_string(count) + " needs " +
           std::to_string((count + per_line - 1) / per_line) + " line(s), only " + std::to_string(left) +
           " are left (the file is truncated, or the count is wrong)");
  }
  // Numbers announced for a block of `rows` lines cannot exceed what those bytes can hold.
  void check_numbers(long rows, long cols, const std::string& what) const {
    check_count(rows, 1, what + " rows");
    size_t bytes = 0;
    for (size_t k = pos_; k < lines_.size(); ++k) bytes += lines_[k].second.size() + 1;
    if (rows > 0 && cols > 0 && static_cast<double>(rows) * cols > static_cast<double>(bytes) / 2 + 1)
      fail("unexpected end of file: " + what + " " + std::to_string(rows) + " x " + std::to_string(cols) +
           " needs more numbers than the " + std::to_string(bytes) +
           " bytes left can hold (the file is truncated, or the count is wrong)");
  }
  void at_end() {
    last_no_ = lines_.empty() ? 1 : lines_.back().first + 1;
  }

  bool done() const { return pos_ >= lines_.size(); }
  // Whether the next record starts with `key` (optional records).
  bool next_is(const std::string& key) const {
    if (done()) return false;
    auto w = split(lines_[pos_].second);
    return !w.empty() && w[0] == key;
  }

  // Next record, split into words; the first word must be `key`.
  std::vector<std::string> record(const std::string& key) {
    if (done()) {
      at_end();
      fail("unexpected end of file: expected '" + key + "' (the file is truncated)");
    }
    last_no_ = lines_[pos_].first;
    auto words = split(lines_[pos_].second);
    if (words.empty() || words[0] != key) fail("expected '" + key + "', found '" + (words.empty() ? "" : words[0]) + "'");
    return words;
  }
  // The rest of the line after the first word (for free text such as metadata).
  std::string rest(const std::string& key) {
    record(key);
    const std::string& l = lines_[pos_].second;
    size_t a = l.find(key) + key.size();
    a = l.find_first_not_of(" \t", a);
    std::string r = a == std::string::npos ? "" : l.substr(a);
    ++pos_;
    return r;
  }
  std::vector<std::string> take(const std::string& key, size_t n_words) {
    auto w = record(key);
    if (w.size() != n_words)
      fail("'" + key + "' takes " + std::to_string(n_words - 1) + " value(s), found " + std::to_string(w.size() - 1));
    ++pos_;
    return w;
  }
  std::vector<std::string> data_line() {
    if (done()) {
      at_end();
      fail("unexpected end of file inside a data block (the file is truncated)");
    }
    last_no_ = lines_[pos_].first;
    return split(lines_[pos_++].second);
  }

  double number(const std::string& w) const {
    errno = 0;
    char* end = nullptr;
    if (!decimal_syntax(w)) fail("'" + w + "' is not a finite number");
    const double x = std::strtod(w.c_str(), &end);
    if (end == w.c_str() || *end != '\0' || errno == ERANGE || !std::isfinite(x))
      fail("'" + w + "' is not a finite number");
    return x;
  }
  long integer(const std::string& w, long lo, long hi, const std::string& what) const {
    char* end = nullptr;
    errno = 0;
    if (!integer_syntax(w)) fail(what + ": '" + w + "' is not an integer");
    const long x = std::strtol(w.c_str(), &end, 10);
    if (end == w.c_str() || *end != '\0' || errno == ERANGE) fail(what + ": '" + w + "' is not an integer");
    if (x < lo || x > hi) fail(what + " " + w + " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
    return x;
  }
  // A matrix record "key rows cols" followed by `rows` lines of `cols` numbers.
  std::vector<double> matrix(const std::string& key, long rows, long cols) {
    auto w = take(key, 3);
    const long r = integer(w[1], 0, 1L << 30, key + " rows"), c = integer(w[2], 0, 1L << 30, key + " columns");
    if (r != rows || c != cols) {
      fail("'" + key + "' must be " + std::to_string(rows) + " x " + std::to_string(cols) + ", found " + w[1] + " x " + w[2]);
    }
    check_numbers(rows, cols, "'" + key + "'");
    std::vector<double> out;
    out.reserve(static_cast<size_t>(rows) * cols);
    for (long i = 0; i < rows; ++i) {
      auto d = data_line();
      if (static_cast<long>(d.size()) != cols) {
          fail("row " + std::to_string(i + 1) + " of '" + key + "' has " + std::to_string(d.size()) + " numbers, expected " +
             std::to_string(cols));
      }
      for (auto& s : d) out.push_back(number(s));
    }
    return out;
  }

  static std::vector<std::string> split(const std::string& l) {
    std::vector<std::string> w;
    std::istringstream in(l);
    std::string s;
    while (in >> s) w.push_back(s);
    return w;
  }

 private:
  std::string name_;
  std::vector<std::pair<int, std::string>> lines_;
  size_t pos_ = 0;
  int last_no_ = 1;
};

std::string num(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

void write_matrix(std::ostringstream& o, const std::string& key, const std::vector<double>& v, size_t rows, size_t cols) {
  o << key << ' ' << rows << ' ' << cols << '\n';
  for (size_t i = 0; i < rows; ++i) {
    for (size_t j = 0; j < cols; ++j) o << (j ? " " : "") << num(v[i * cols + j]);
    o << '\n';
  }
}

// core_range P, then P lines "a b lo hi" (a <= b, every pair once): the inner envelope of the basis.
void read_core_range(Reader& rd, BasisSpec& spec) {
  const int S = spec.n_species;
  const long P = static_cast<long>(S) * (S + 1) / 2;
  auto w = rd.take("core_range", 2);
  if (rd.integer(w[1], P, P, "number of core_range pairs") != P) rd.fail("core_range must list every pair once");
  const size_t np = static_cast<size_t>(S) * S;
  spec.core_lo.assign(np, -1.0);
  spec.core_hi.assign(np, -1.0);
  for (long k = 0; k < P; ++k) {
    auto d = rd.data_line();
    if (d.size() != 4) rd.fail("a core_range line needs 4 values (a b lo hi)");
    const long a = rd.integer(d[0], 0, S - 1, "core_range species"), b = rd.integer(d[1], 0, S - 1, "core_range species");
    if (spec.core_lo[a * S + b] >= 0.0) rd.fail("core_range lists the pair " + d[0] + " " + d[1] + " twice");
    const double lo = rd.number(d[2]), hi = rd.number(d[3]);
    if (!(lo >= 0.0 && lo < hi)) rd.fail("core_range needs 0 <= lo < hi, got " + d[2] + " " + d[3]);
    spec.core_lo[a * S + b] = spec.core_lo[b * S + a] = lo;
    spec.core_hi[a * S + b] = spec.core_hi[b * S + a] = hi;
  }
}

// chemical_channels C S, then C lines of S weights W_{k z} (the species-embedded basis).
void read_chemical_channels(Reader& rd, BasisSpec& spec) {
  auto w = rd.record("chemical_channels");
  if (w.size() != 3) rd.fail("'chemical_channels' takes the number of channels and of species");
  const long S = spec.n_species;
  const long C = rd.integer(w[1], 1, S, "number of chemical channels");
  rd.integer(w[2], S, S, "chemical_channels columns (the number of elements)");
  spec.chem_weights = rd.matrix("chemical_channels", C, S);
  spec.n_chem = static_cast<int>(C);
}

// gate_mean .. gate_bias of one gate of M experts on D inputs (the structure gate, or one species'
// atom gate).
Gate read_gate(Reader& rd, long M, long D, double tau) {
  Gate gate;
  gate.n_experts = static_cast<int>(M);
  gate.temperature = tau;
  gate.dim_in = static_cast<int>(D);
  gate.mean = rd.matrix("gate_mean", 1, D);
  gate.scale = rd.matrix("gate_scale", 1, D);
  auto pw = rd.record("gate_projection");
  if (pw.size() != 3) rd.fail("'gate_projection' takes rows and columns");
  const long d = rd.integer(pw[1], 1, 1L << 20, "gate projection rows");
  gate.dim_out = static_cast<int>(d);
  gate.projection = rd.matrix("gate_projection", d, D);
  gate.centroids = rd.matrix("gate_centroids", M, d);
  gate.spread = rd.matrix("gate_spread", 1, M);
  gate.bias = rd.matrix("gate_bias", 1, M);
  return gate;
}

void write_gate(std::ostringstream& o, const Gate& g, size_t M) {
  write_matrix(o, "gate_mean", g.mean, 1, g.dim_in);
  write_matrix(o, "gate_scale", g.scale, 1, g.dim_in);
  write_matrix(o, "gate_projection", g.projection, g.dim_out, g.dim_in);
  write_matrix(o, "gate_centroids", g.centroids, M, g.dim_out);
  write_matrix(o, "gate_spread", g.spread, 1, M);
  write_matrix(o, "gate_bias", g.bias, 1, M);
}

}  // namespace

Potential Potential::parse(const std::string& text, const std::string& name) {
  Reader rd(text, name);
  auto head = rd.take(kMagic, 2);
  if (head[1].size() > 1 && head[1][0] == '0')
    rd.fail("format version '" + head[1] + "' must be a plain integer without leading zeros");
  const long version = rd.integer(head[1], 1, 1 << 20, "format version");
  if (version > kFormatVersion) {
    rd.fail("format version " + head[1] + " is newer than this dcace reads (" + std::to_string(kFormatVersion) + ")");
  }
  auto el = rd.record("elements");
  if (el.size() < 3) rd.fail("'elements' needs a count and the element names");
  const long S = rd.integer(el[1], 1, 118, "number of elements");
  if (static_cast<long>(el.size()) != S + 2) rd.fail("'elements' announces " + el[1] + " names but lists " + std::to_string(el.size() - 2));
  std::vector<std::string> elements(el.begin() + 2, el.end());
  for (const auto& e : elements)
    if (utf8_prefix(e) != e.size()) rd.fail("element name '" + e + "' is not valid UTF-8");
  rd.take("elements", el.size());  // consume
  std::string metadata = rd.rest("metadata");
  {  // informational, but Python reads it: valid UTF-8 and one JSON object
    const size_t ok = utf8_prefix(metadata);
    if (ok != metadata.size())
      rd.fail("metadata is not valid UTF-8 (byte " + std::to_string(ok + 1) + " of the JSON text)");
    const size_t b = metadata.find_last_not_of(" \t");
    if (metadata.empty() || metadata[0] != '{' || metadata[b] != '}')
      rd.fail("metadata must be one JSON object {...} on one line, found '" + metadata.substr(0, 40) + "'");
  }
  auto rad = rd.take("radial_basis", 2);
  if (rad[1] != "chebyshev-cubic-envelope") {
    rd.fail("unknown radial basis '" + rad[1] + "'");
  }
  BasisSpec spec;
  spec.n_species = static_cast<int>(S);
  spec.r_cut = rd.number(rd.take("r_cut", 2)[1]);
  spec.r_inner = rd.number(rd.take("r_inner", 2)[1]);
  spec.n_radial = static_cast<int>(rd.integer(rd.take("n_radial", 2)[1], 1, 1000, "n_radial"));
  spec.l_max = static_cast<int>(rd.integer(rd.take("l_max", 2)[1], 0, 15, "l_max"));
  if (version >= 2 && rd.next_is("core_range")) read_core_range(rd, spec);
  if (version >= 5 && rd.next_is("chemical_channels")) read_chemical_channels(rd, spec);
  const long n_z = spec.n_chem > 0 ? spec.n_chem : S;
  const long nc = rd.integer(rd.take("channels", 2)[1], 0, 1L << 24, "number of channels");
  rd.check_count(nc, 1, "number of channels");
  for (long c = 0; c < nc; ++c) {
    auto d = rd.data_line();
    if (d.size() != 3) { rd.fail("a channel line needs 3 integers (z n l)"); }
    spec.chan_z.push_back(static_cast<int>(
        rd.integer(d[0], 0, n_z - 1, spec.n_chem > 0 ? "channel chemical index" : "channel species")));
    spec.chan_n.push_back(static_cast<int>(rd.integer(d[1], 0, spec.n_radial - 1, "channel radial index")));
    spec.chan_l.push_back(static_cast<int>(rd.integer(d[2], 0, spec.l_max, "channel l")));
  }
  long nA = 0;
  for (long c = 0; c < nc; ++c) nA += 2 * spec.chan_l[c] + 1;
  const long nm = rd.integer(rd.take("monomials", 2)[1], 0, 1L << 28, "number of monomials");
  rd.check_count(nm, 1, "number of monomials");
  spec.mono_idx.assign(static_cast<size_t>(nm) * kMaxOrder, -1);
  for (long t = 0; t < nm; ++t) {
    auto d = rd.data_line();
    if (d.empty()) { rd.fail("empty monomial line"); }
    const long o = rd.integer(d[0], 1, kMaxOrder, "monomial order");
    if (static_cast<long>(d.size()) != o + 1) { rd.fail("monomial of order " + d[0] + " needs " + d[0] + " indices"); }
    for (long q = 0; q < o; ++q) spec.mono_idx[t * kMaxOrder + q] = static_cast<int>(rd.integer(d[q + 1], 0, nA - 1, "A index"));
  }
  auto fw = rd.take("features", 3);
  const long K = rd.integer(fw[1], 0, 1L << 24, "number of features");
  const long nnz = rd.integer(fw[2], 0, 1L << 30, "number of feature terms");
  rd.check_numbers(K, 2 * (nnz / std::max(K, 1L)), "'features'");
  spec.n_features = static_cast<int>(K);
  spec.feat_ptr.push_back(0);
  for (long v = 0; v < K; ++v) {
    auto d = rd.data_line();
    if (d.empty()) { rd.fail("empty feature line"); }
    const long n = rd.integer(d[0], 0, 1L << 24, "number of terms");
    if (static_cast<long>(d.size()) != 2 * n + 1) { rd.fail("feature " + std::to_string(v) + " announces " + d[0] + " terms but has " + std::to_string((d.size() - 1) / 2.0)); }
    for (long q = 0; q < n; ++q) {
      spec.feat_mono.push_back(static_cast<int>(rd.integer(d[1 + 2 * q], 0, nm - 1, "monomial index")));
      spec.feat_coef.push_back(rd.number(d[2 + 2 * q]));
    }
    spec.feat_ptr.push_back(static_cast<int>(spec.feat_mono.size()));
  }
  if (static_cast<long>(spec.feat_mono.size()) != nnz) rd.fail("'features' announced " + fw[2] + " terms, found " + std::to_string(spec.feat_mono.size()));
  const long M = rd.integer(rd.take("experts", 2)[1], 1, 1 << 20, "number of experts");
  std::vector<double> e0 = rd.matrix("one_body", M, S);
  std::vector<double> coef = rd.matrix("coefficients", M * S, K);
  Gate gate;
  gate.n_experts = static_cast<int>(M);
  GateKind kind = M > 1 ? GateKind::Structure : GateKind::None;
  std::vector<Gate> local_gates;
  double gate_range = 0.0;   // neighbourhood gate (version 7)
  int gate_body_order = 0;
  if (M > 1) {
    auto gt = rd.take("gate", 2);
    if ((gt[1] == "atom" && version >= 6) || (gt[1] == "neighbourhood" && version >= 7)) {
      kind = GateKind::Atom;
      const double tau = rd.number(rd.take("gate_temperature", 2)[1]);
      if (!(tau > 0)) { rd.fail("gate_temperature must be > 0"); }
      if (gt[1] == "neighbourhood") {
        gate_range = rd.number(rd.take("gate_range", 2)[1]);
        if (!(gate_range > 0.0 && gate_range <= spec.r_cut))
          rd.fail("gate_range must be in (0, r_cut], got " + num(gate_range));
        gate_body_order = static_cast<int>(rd.integer(rd.take("gate_body_order", 2)[1], 0, kMaxOrder + 1, "gate_body_order"));
      }
      for (long z = 0; z < S; ++z) local_gates.push_back(read_gate(rd, M, K, tau));
    } else if (gt[1] == "gaussian") {
      const double tau = rd.number(rd.take("gate_temperature", 2)[1]);
      if (!(tau > 0)) { rd.fail("gate_temperature must be > 0"); }
      gate = read_gate(rd, M, S * K, tau);
    } else {
      rd.fail("unknown gate type '" + gt[1] + "'" +
              (version >= 7 ? " (known: gaussian, atom, neighbourhood)"
                            : " (known in version " + std::to_string(version) + ": gaussian" + (version >= 6 ? ", atom)" : ")")));
    }
  }
  Baseline baseline;
  if (version >= 2 && rd.next_is("baseline")) {
    auto bw = rd.record("baseline");
    if (bw.size() < 2 || bw[1] != "zbl") rd.fail("unknown baseline '" + (bw.size() > 1 ? bw[1] : "") + "' (known: zbl)");
    if (static_cast<long>(bw.size()) != S + 2)
      rd.fail("'baseline zbl' needs one atomic number per element (" + std::to_string(S) + ")");
    for (long a = 0; a < S; ++a) baseline.atomic_numbers.push_back(static_cast<double>(rd.integer(bw[2 + a], 1, 118, "atomic number")));
    rd.take("baseline", bw.size());
    if (rd.next_is("core_density")) {
      baseline.density_cutoff = rd.number(rd.take("core_density", 2)[1]);
      const std::vector<double> range = rd.matrix("core_density_range", S, 2);
      for (long a = 0; a < S; ++a) {
        baseline.rho_lo.push_back(range[2 * a]);
        baseline.rho_hi.push_back(range[2 * a + 1]);
      }
    }
    if (version >= 4 && rd.next_is("core_shift")) baseline.pair_shift = rd.matrix("core_shift", S, S);
    if (version >= 8 && rd.next_is("core_wall")) {
      const std::vector<double> wall = rd.matrix("core_wall", S, 2);
      for (long a = 0; a < S; ++a) {
        baseline.wall_level.push_back(wall[2 * a]);
        baseline.wall_slope.push_back(wall[2 * a + 1]);
      }
    }
  }
  // extrapolation grade (format version 3; absent or `grade none`: unavailable)
  bool has_grade = false;
  Grade grade;
  if (rd.next_is("grade")) {
    auto gw = rd.take("grade", 2);
    if (gw[1] == "maxvol") {
      has_grade = true;
      for (long s = 0; s < S; ++s) {
        auto mw = rd.record("grade_matrix");
        if (mw.size() != 3) rd.fail("'grade_matrix' takes rows and columns");
        const long r = rd.integer(mw[2], 0, K, "grade_matrix columns");
        grade.rank.push_back(static_cast<int>(r));
        if (r == 0) {  // a species without training atoms: no data lines
          rd.take("grade_matrix", 3);
          grade.G.emplace_back();
        } else {
          grade.G.push_back(rd.matrix("grade_matrix", K, r));
        }
      }
    } else if (gw[1] != "none") {
      rd.fail("unknown extrapolation grade '" + gw[1] + "' (expected maxvol or none)");
    }
  }
  rd.take("end", 1);
  if (!rd.done()) rd.fail("unexpected content after 'end'");
  try {
    Potential pot(std::move(elements), std::move(spec), std::move(coef), std::move(e0), static_cast<int>(M),
                  std::move(gate), std::move(metadata), std::move(baseline), kind, std::move(local_gates));
    pot.source_ = name;
    if (gate_range > 0.0) pot.set_neighbourhood(gate_range, gate_body_order);
    if (has_grade) pot.set_grade(std::move(grade));
    return pot;
  } catch (const InputError& e) {
    throw FileError(name + ": inconsistent potential: " + e.what());
  }
}

Potential Potential::read(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw FileError(path + ": cannot open the potential file: it is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path + ": cannot open the potential file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

std::string Potential::write() const {
  const BasisSpec& s = basis_->spec();
  const int S = s.n_species, K = s.n_features, M = n_experts_;
  std::ostringstream o;
  o << kMagic << ' ' << kFormatVersion << '\n';
  o << "# dcace divide-and-conquer linear ACE potential; format: docs/potential-format.md\n";
  o << "elements " << S;
  for (auto& e : elements_) o << ' ' << e;
  o << '\n';
  o << "metadata " << metadata_ << '\n';
  o << "radial_basis chebyshev-cubic-envelope\n";
  o << "r_cut " << num(s.r_cut) << '\n' << "r_inner " << num(s.r_inner) << '\n';
  o << "n_radial " << s.n_radial << '\n' << "l_max " << s.l_max << '\n';
  if (basis_->has_core()) {
    o << "core_range " << S * (S + 1) / 2 << '\n';
    for (int a = 0; a < S; ++a)
      for (int b = a; b < S; ++b) o << a << ' ' << b << ' ' << num(basis_->core_lo(a, b)) << ' ' << num(basis_->core_hi(a, b)) << '\n';
  }
  if (s.n_chem > 0) write_matrix(o, "chemical_channels", s.chem_weights, s.n_chem, S);
  o << "channels " << s.chan_z.size() << '\n';
  for (size_t c = 0; c < s.chan_z.size(); ++c) o << s.chan_z[c] << ' ' << s.chan_n[c] << ' ' << s.chan_l[c] << '\n';
  const size_t nm = s.mono_idx.size() / kMaxOrder;
  o << "monomials " << nm << '\n';
  for (size_t t = 0; t < nm; ++t) {
    int ord = 0;
    while (ord < kMaxOrder && s.mono_idx[t * kMaxOrder + ord] >= 0) ++ord;
    o << ord;
    for (int q = 0; q < ord; ++q) o << ' ' << s.mono_idx[t * kMaxOrder + q];
    o << '\n';
  }
  o << "features " << K << ' ' << s.feat_mono.size() << '\n';
  for (int v = 0; v < K; ++v) {
    o << (s.feat_ptr[v + 1] - s.feat_ptr[v]);
    for (int q = s.feat_ptr[v]; q < s.feat_ptr[v + 1]; ++q) o << ' ' << s.feat_mono[q] << ' ' << num(s.feat_coef[q]);
    o << '\n';
  }
  o << "experts " << M << '\n';
  write_matrix(o, "one_body", e0_, M, S);
  write_matrix(o, "coefficients", coef_, static_cast<size_t>(M) * S, K);
  if (kind_ == GateKind::Atom) {
    o << "gate atom\n" << "gate_temperature " << num(local_gates_[0].temperature) << '\n';
    for (const Gate& g : local_gates_) write_gate(o, g, M);
  } else if (kind_ == GateKind::Neighbourhood) {
    o << "gate neighbourhood\n" << "gate_temperature " << num(local_gates_[0].temperature) << '\n'
      << "gate_range " << num(gate_range_) << '\n' << "gate_body_order " << gate_body_order_ << '\n';
    for (const Gate& g : local_gates_) write_gate(o, g, M);
  } else if (M > 1) {
    o << "gate gaussian\n" << "gate_temperature " << num(gate_.temperature) << '\n';
    write_gate(o, gate_, M);
  }
  if (baseline_.enabled()) {
    o << "baseline zbl";
    for (double z : baseline_.atomic_numbers) o << ' ' << static_cast<int>(z);
    o << '\n';
    if (baseline_.has_density_core()) {
      o << "core_density " << num(baseline_.density_cutoff) << '\n';
      std::vector<double> range;
      for (int a = 0; a < S; ++a) {
        range.push_back(baseline_.rho_lo[a]);
        range.push_back(baseline_.rho_hi[a]);
      }
      write_matrix(o, "core_density_range", range, S, 2);
    }
    if (!baseline_.pair_shift.empty()) write_matrix(o, "core_shift", baseline_.pair_shift, S, S);
    if (baseline_.has_density_wall()) {
      std::vector<double> wall;
      for (int a = 0; a < S; ++a) {
        wall.push_back(baseline_.wall_level[a]);
        wall.push_back(baseline_.wall_slope[a]);
      }
      write_matrix(o, "core_wall", wall, S, 2);
    }
  }
  if (grade_) {
    o << "grade " << grade_->kind << '\n';
    for (int sp = 0; sp < S; ++sp) {
      if (grade_->rank[sp] == 0)
        o << "grade_matrix " << K << " 0\n";
      else
        write_matrix(o, "grade_matrix", grade_->G[sp], K, grade_->rank[sp]);
    }
  } else {
    o << "grade none\n";
  }
  o << "end\n";
  return o.str();
}

}  // namespace dcace
