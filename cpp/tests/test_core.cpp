// C++ tests of the dcace core without Python: read a potential file, evaluate one structure,
// compare the forces with central finite differences of the energy, and check the sums
// (per-atom energies -> E, per-atom virials -> virial = sum_i x_i (x) F_i for a cluster) and the
// reader's refusal of a count the file cannot hold.
//
//   test_core             a small built-in potential, written to a file and read back
//   test_core FILE.dcace  the same checks on FILE (species assigned round-robin)
//
// Built with -DDCACE_BUILD_TESTS=ON and run by ctest (tests/test_cpp_core.py does both).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "dcace/potential.hpp"

using namespace dcace;

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// A one-species basis: l = 0, 1, 2 channels, monomials of order 1..3 and rotation-invariant
// features (products of A_{lm} summed over m).
Potential builtin_potential() {
  BasisSpec s;
  s.n_species = 1;
  s.r_cut = 4.5;
  s.r_inner = 0.5;
  s.n_radial = 3;
  s.l_max = 2;
  // channels (z n l): A indices 0,1,2 (l=0, n=0..2), 3..5 (n=0, l=1), 6..8 (n=1, l=1), 9..13 (n=0, l=2)
  const int ch[6][3] = {{0, 0, 0}, {0, 1, 0}, {0, 2, 0}, {0, 0, 1}, {0, 1, 1}, {0, 0, 2}};
  for (auto& c : ch) {
    s.chan_z.push_back(c[0]);
    s.chan_n.push_back(c[1]);
    s.chan_l.push_back(c[2]);
  }
  std::vector<std::vector<int>> mono = {{0}, {1}, {2}, {0, 0}, {0, 1}, {1, 2}};
  for (int m = 0; m < 3; ++m) mono.push_back({3 + m, 3 + m});
  for (int m = 0; m < 3; ++m) mono.push_back({3 + m, 6 + m});
  for (int m = 0; m < 5; ++m) mono.push_back({9 + m, 9 + m});
  for (int m = 0; m < 3; ++m) mono.push_back({0, 3 + m, 3 + m});
  for (const auto& t : mono)
    for (int q = 0; q < kMaxOrder; ++q) s.mono_idx.push_back(q < static_cast<int>(t.size()) ? t[q] : -1);
  // features: each of the first 6 monomials alone, then the four sums over m
  const std::vector<std::vector<int>> feat = {{0}, {1}, {2}, {3}, {4}, {5}, {6, 7, 8}, {9, 10, 11},
                                              {12, 13, 14, 15, 16}, {17, 18, 19}};
  s.feat_ptr.push_back(0);
  for (const auto& f : feat) {
    for (int t : f) {
      s.feat_mono.push_back(t);
      s.feat_coef.push_back(1.0);
    }
    s.feat_ptr.push_back(static_cast<int>(s.feat_mono.size()));
  }
  s.n_features = static_cast<int>(feat.size());
  std::vector<double> coef;
  for (int v = 0; v < s.n_features; ++v) coef.push_back(0.3 * std::sin(1.7 * v + 0.4));
  return Potential({"Mo"}, s, coef, {-3.0}, 1, Gate{}, "{\"test\":\"test_core\"}");
}

// Deterministic rattled 3 x 3 x 2 grid (a cluster: no periodic images), spacing 0.55 r_cut.
std::vector<double> cluster(double r_cut) {
  std::vector<double> x;
  unsigned long long state = 12345;
  auto uniform = [&]() {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) / 9007199254740992.0 - 0.5;
  };
  const double a = 0.55 * r_cut;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 2; ++k) {
        x.push_back(a * i + 0.3 * uniform());
        x.push_back(a * j + 0.3 * uniform());
        x.push_back(a * k + 0.3 * uniform());
      }
  return x;
}

struct Result {
  double E = 0.0;
  std::vector<double> energies, forces, virial, virials, weights;
};

Result evaluate(const Potential& pot, const std::vector<double>& x) {
  const int N = static_cast<int>(x.size() / 3);
  std::vector<int> species(N), j;
  std::vector<int64_t> first(1, 0);
  std::vector<double> rij;
  for (int a = 0; a < N; ++a) {
    species[a] = a % pot.n_species();
    for (int b = 0; b < N; ++b) {
      if (a == b) continue;
      double d[3], r2 = 0.0;
      for (int c = 0; c < 3; ++c) {
        d[c] = x[3 * b + c] - x[3 * a + c];
        r2 += d[c] * d[c];
      }
      if (r2 >= pot.cutoff() * pot.cutoff()) continue;
      j.push_back(b);
      rij.insert(rij.end(), d, d + 3);
    }
    first.push_back(static_cast<int64_t>(j.size()));
  }
  Neighbours nl;
  nl.n_atoms = N;
  nl.species = species.data();
  nl.first = first.data();
  nl.j = j.data();
  nl.rij = rij.data();
  Result r;
  r.energies.resize(N);
  r.forces.resize(3 * N);
  r.virial.resize(6);
  r.virials.resize(6 * N);
  Combination comb;
  r.E = pot.compute(nl, r.energies.data(), r.forces.data(), r.virial.data(), comb, r.virials.data());
  r.weights = comb.weights;
  return r;
}

void check_potential(const Potential& pot, const std::string& label) {
  std::printf("-- %s: %d species, %d features, %d expert(s), cutoff %g\n", label.c_str(), pot.n_species(),
              pot.n_features(), pot.n_experts(), pot.cutoff());
  const std::vector<double> x = cluster(pot.cutoff());
  const int N = static_cast<int>(x.size() / 3);
  const Result r = evaluate(pot, x);
  expect(std::isfinite(r.E), label + ": energy is finite");
  std::printf("     E = %.10g eV, gate weights", r.E);
  for (double w : r.weights) std::printf(" %.4f", w);
  std::printf("\n");
  double esum = 0.0, fmax = 0.0;
  for (double e : r.energies) esum += e;
  for (double f : r.forces) fmax = std::fmax(fmax, std::fabs(f));
  expect(std::fabs(esum - r.E) <= 1e-10 * std::fabs(r.E), label + ": per-atom energies sum to E");
  expect(fmax > 1e-6, label + ": forces are not all zero");

  // central finite differences of E
  const double h = 1e-5;
  double worst = 0.0;
  for (int k = 0; k < 3 * N; ++k) {
    std::vector<double> p = x, m = x;
    p[k] += h;
    m[k] -= h;
    const double fd = -(evaluate(pot, p).E - evaluate(pot, m).E) / (2 * h);
    worst = std::fmax(worst, std::fabs(fd - r.forces[k]));
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, ": forces = -dE/dx by central differences (max error %.2e, max |F| %.2e)", worst,
                fmax);
  expect(worst <= 1e-6 * fmax + 1e-9, label + buf);

  // virial of a cluster: sum_i x_i (x) F_i; per-atom virials sum to it
  static const int va[6] = {0, 1, 2, 1, 0, 0}, vb[6] = {0, 1, 2, 2, 2, 1};
  double dv = 0.0, dva = 0.0, vmax = 0.0;
  for (int q = 0; q < 6; ++q) {
    double w = 0.0, s = 0.0;
    for (int i = 0; i < N; ++i) {
      w += x[3 * i + va[q]] * r.forces[3 * i + vb[q]];
      s += r.virials[6 * i + q];
    }
    dv = std::fmax(dv, std::fabs(w - r.virial[q]));
    dva = std::fmax(dva, std::fabs(s - r.virial[q]));
    vmax = std::fmax(vmax, std::fabs(r.virial[q]));
  }
  expect(dv <= 1e-10 * (vmax + 1.0), label + ": virial = sum_i x_i (x) F_i");
  expect(dva <= 1e-12 * (vmax + 1.0), label + ": per-atom virials sum to the virial");
}

// The built-in basis with one more feature, 0.5 m_3 - 1.5 m_4 (so monomials 3 and 4 are in two
// features: the general path of the feature map), two experts and an atom gate on B_i (d = 2).
Potential builtin_atom_gate() {
  const Potential base = builtin_potential();
  BasisSpec s = base.basis().spec();
  s.feat_mono.push_back(3);
  s.feat_coef.push_back(0.5);
  s.feat_mono.push_back(4);
  s.feat_coef.push_back(-1.5);
  s.feat_ptr.push_back(static_cast<int>(s.feat_mono.size()));
  const int K = ++s.n_features, M = 2, d = 2;
  std::vector<double> coef;
  for (int m = 0; m < M; ++m)
    for (int v = 0; v < K; ++v) coef.push_back(0.3 * std::sin(1.7 * v + 0.4 + 0.9 * m));
  Gate g;
  g.n_experts = M;
  g.dim_in = K;
  g.dim_out = d;
  g.temperature = 1.0;
  g.mean.assign(K, 0.1);
  g.scale.assign(K, 0.7);
  for (int a = 0; a < d; ++a)
    for (int v = 0; v < K; ++v) g.projection.push_back(0.4 * std::cos(0.8 * v + 1.3 * a));
  g.centroids = {-0.03, 0.15, 0.02, 0.19};   // the atoms have y in [-0.04, 0.03] x [0.15, 0.2]
  g.spread = {0.03, 0.04};
  g.bias = {0.0, 0.1};
  return Potential({"Mo"}, s, coef, {-3.0, -2.8}, M, Gate{}, "{\"test\":\"test_core atom gate\"}", {},
                   GateKind::Atom, {g});
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc > 1) {
      check_potential(Potential::read(argv[1]), argv[1]);
    } else {
      const Potential built = builtin_potential();
      const std::string path = "test_core_builtin.dcace";
      std::ofstream(path, std::ios::binary) << built.write();
      const Potential pot = Potential::read(path);
      expect(pot.write() == built.write(), "built-in potential: exact write/read round trip");
      check_potential(pot, "built-in potential");
      const Potential atom = builtin_atom_gate();
      expect(atom.gate_kind() == GateKind::Atom, "built-in atom gate: gate kind atom");
      check_potential(atom, "built-in atom gate, monomials in two features");

      // a count the file cannot hold is refused before anything is allocated for it
      std::string text = slurp(path);
      const size_t at = text.find("\nmonomials ");
      const size_t eol = text.find('\n', at + 1);
      text = text.substr(0, at + 1) + "monomials 268435456" + text.substr(eol);
      try {
        Potential::parse(text, "huge.dcace");
        expect(false, "monomials 268435456 is refused");
      } catch (const FileError& e) {
        const std::string msg = e.what();
        std::printf("     %s\n", msg.c_str());
        expect(msg.find("huge.dcace:") == 0 && msg.find("268435456") != std::string::npos,
               "monomials 268435456 is refused with file, line and count");
      }
    }
  } catch (const std::exception& e) {
    std::printf("FAIL: exception: %s\n", e.what());
    return 1;
  }
  std::printf("%s (%d failure(s))\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
