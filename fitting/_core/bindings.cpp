// pybind11 module dcace._core: forwards numpy arrays to the C++ core (cpp/) without copies of the
// inputs and returns new numpy arrays.  All physics lives in cpp/; the public Python API is in
// fitting/dcace/*.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "dcace/ace_basis.hpp"
#include "dcace/potential.hpp"
#include "dcace/structure.hpp"

namespace py = pybind11;
using namespace dcace;

template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

namespace {

std::string shape_str(const std::vector<py::ssize_t>& sh) {
  std::string t = "(";
  for (size_t k = 0; k < sh.size(); ++k) t += (k ? ", " : "") + std::to_string(sh[k]);
  return t + (sh.size() == 1 ? ",)" : ")");
}

// ValueError unless `a` has one of `shapes`: "<fn>: <name> must have shape <what> = (...), got (...)".
// Every array whose size the core trusts goes through here (the core reads without bounds checks).
void check_shape(const py::array& a, const char* fn, const char* name, const char* what,
                 std::initializer_list<std::vector<py::ssize_t>> shapes) {
  std::vector<py::ssize_t> got(a.shape(), a.shape() + a.ndim());
  for (const auto& sh : shapes)
    if (got == sh) return;
  std::string want;
  for (const auto& sh : shapes) want += (want.empty() ? "" : " or ") + shape_str(sh);
  throw py::value_error(std::string(fn) + ": " + name + " must have shape " + what + " = " + want + ", got " +
                        shape_str(got));
}

template <class T>
std::vector<T> to_vec(const py::handle& h) {
  auto a = carray<T>::ensure(h);
  if (!a) throw py::value_error("expected a numeric array");
  return std::vector<T>(a.data(), a.data() + a.size());
}

BasisSpec spec_from_dict(const py::dict& d) {
  BasisSpec s;
  s.n_species = d["n_species"].cast<int>();
  s.r_cut = d["r_cut"].cast<double>();
  s.r_inner = d["r_inner"].cast<double>();
  s.n_radial = d["n_radial"].cast<int>();
  s.l_max = d["l_max"].cast<int>();
  if (d.contains("n_chem") && !d["n_chem"].is_none()) {  // the species-embedded basis
    s.n_chem = d["n_chem"].cast<int>();
    if (s.n_chem > 0) s.chem_weights = to_vec<double>(d["chem_weights"]);
  }
  s.chan_z = to_vec<int>(d["chan_z"]);
  s.chan_n = to_vec<int>(d["chan_n"]);
  s.chan_l = to_vec<int>(d["chan_l"]);
  s.mono_idx = to_vec<int>(d["mono_idx"]);
  s.n_features = d["n_features"].cast<int>();
  s.feat_ptr = to_vec<int>(d["feat_ptr"]);
  s.feat_mono = to_vec<int>(d["feat_mono"]);
  s.feat_coef = to_vec<double>(d["feat_coef"]);
  if (d.contains("core_lo") && !d["core_lo"].is_none()) {  // (S, S) arrays of the inner envelope
    s.core_lo = to_vec<double>(d["core_lo"]);
    s.core_hi = to_vec<double>(d["core_hi"]);
  }
  return s;
}

template <class T>
py::array_t<T> vec_array(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
  py::array_t<T> a(shape);
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

py::dict spec_to_dict(const BasisSpec& s) {
  py::dict d;
  d["n_species"] = s.n_species;
  d["r_cut"] = s.r_cut;
  d["r_inner"] = s.r_inner;
  d["n_radial"] = s.n_radial;
  d["l_max"] = s.l_max;
  d["n_chem"] = s.n_chem;
  if (s.n_chem > 0)
    d["chem_weights"] = vec_array(s.chem_weights, {s.n_chem, s.n_species});
  else
    d["chem_weights"] = py::none();
  d["chan_z"] = vec_array(s.chan_z, {(py::ssize_t)s.chan_z.size()});
  d["chan_n"] = vec_array(s.chan_n, {(py::ssize_t)s.chan_n.size()});
  d["chan_l"] = vec_array(s.chan_l, {(py::ssize_t)s.chan_l.size()});
  d["mono_idx"] = vec_array(s.mono_idx, {(py::ssize_t)(s.mono_idx.size() / kMaxOrder), kMaxOrder});
  d["n_features"] = s.n_features;
  d["feat_ptr"] = vec_array(s.feat_ptr, {(py::ssize_t)s.feat_ptr.size()});
  d["feat_mono"] = vec_array(s.feat_mono, {(py::ssize_t)s.feat_mono.size()});
  d["feat_coef"] = vec_array(s.feat_coef, {(py::ssize_t)s.feat_coef.size()});
  if (!s.core_lo.empty()) {
    d["core_lo"] = vec_array(s.core_lo, {s.n_species, s.n_species});
    d["core_hi"] = vec_array(s.core_hi, {s.n_species, s.n_species});
  } else {
    d["core_lo"] = py::none();
    d["core_hi"] = py::none();
  }
  return d;
}

// The CSR neighbour list passed from Python; keeps the arrays alive while in use.
struct NL {
  carray<int> species;
  carray<int64_t> first;
  carray<int> j;
  carray<double> rij;
  Neighbours view;
  NL(const py::handle& sp, const py::handle& fi, const py::handle& jj, const py::handle& r)
      : species(carray<int>::ensure(sp)), first(carray<int64_t>::ensure(fi)), j(carray<int>::ensure(jj)),
        rij(carray<double>::ensure(r)) {
    if (!species || !first || !j || !rij) throw py::value_error("neighbour list arrays must be numeric");
    const py::ssize_t n = species.size();
    check_shape(species, "neighbour list", "species", "(n_atoms,)", {{n}});
    check_shape(first, "neighbour list", "first", "(n_atoms + 1,)", {{n + 1}});
    const int64_t P = first.data()[n];
    if (first.data()[0] != 0 || P < 0) throw py::value_error("neighbour list: first must start at 0 and end at the number of pairs >= 0");
    for (py::ssize_t i = 0; i < n; ++i)  // every atom's pairs inside 0..P (the core trusts them)
      if (first.data()[i + 1] < first.data()[i] || first.data()[i + 1] > P)
        throw py::value_error("neighbour list: first must be non-decreasing from 0 to first[-1]; first[" +
                              std::to_string(i + 1) + "] = " + std::to_string(first.data()[i + 1]));
    check_shape(j, "neighbour list", "j", "(n_pairs,) with n_pairs = first[-1]", {{(py::ssize_t)P}});
    check_shape(rij, "neighbour list", "rij", "(n_pairs, 3) with n_pairs = first[-1]", {{(py::ssize_t)P, 3}});
    view.n_atoms = static_cast<int>(n);
    view.species = species.data();
    view.first = first.data();
    view.j = j.data();
    view.rij = rij.data();
  }
};

py::dict combination_dict(const Combination& c, int S, int K) {
  py::dict d;
  d["weights"] = vec_array(c.weights, {(py::ssize_t)c.weights.size()});
  d["expert_energies"] = vec_array(c.expert_energy, {(py::ssize_t)c.expert_energy.size()});
  d["c_eff"] = vec_array(c.c_eff, {S, K});
  d["c_energy"] = vec_array(c.c_energy, {S, K});
  d["e0_energy"] = vec_array(c.e0_energy, {S});
  d["energy"] = c.energy;
  d["nearest"] = c.nearest;
  return d;
}

Gate one_gate_from_dict(const py::dict& d, int M, int D, double tau) {
  Gate g;
  g.n_experts = M;
  g.dim_in = D;
  g.temperature = tau;
  g.mean = to_vec<double>(d["mean"]);
  g.scale = to_vec<double>(d["scale"]);
  auto P = carray<double>::ensure(d["projection"]);
  if (!P || P.ndim() != 2) throw py::value_error("gate projection must be a 2-D array");
  g.dim_out = static_cast<int>(P.shape(0));
  g.projection.assign(P.data(), P.data() + P.size());
  g.centroids = to_vec<double>(d["centroids"]);
  g.spread = to_vec<double>(d["spread"]);
  g.bias = to_vec<double>(d["bias"]);
  return g;
}

// The gate of a PotentialCore: None (M = 1), the structure gate's dict (mean, scale, projection,
// centroids, spread, bias, temperature; kind "structure" optional) or {"kind": "atom",
// "temperature": tau, "species": [one such dict per species, on K inputs]}.
// {"kind": "neighbourhood", "temperature", "range": r_g, "body_order": 0 (all columns) or the largest
// body order of the columns its PCA used, "species": [...]} as the atom gate's.
struct GateSpec {
  GateKind kind = GateKind::Structure;
  Gate gate;
  std::vector<Gate> local;
  bool neighbourhood = false;
  double range = 0.0;
  int body_order = 0;
};

GateSpec gate_from_dict(const py::object& o, int M, int S, int K) {
  GateSpec gs;
  gs.gate.n_experts = M;
  if (M == 1 || o.is_none()) return gs;
  py::dict d = o.cast<py::dict>();
  const std::string kind = d.contains("kind") ? d["kind"].cast<std::string>() : "structure";
  const double tau = d["temperature"].cast<double>();
  if (kind == "structure") {
    gs.gate = one_gate_from_dict(d, M, S * K, tau);
  } else if (kind == "atom" || kind == "neighbourhood") {
    gs.kind = GateKind::Atom;
    for (const auto& item : d["species"].cast<py::list>())
      gs.local.push_back(one_gate_from_dict(item.cast<py::dict>(), M, K, tau));
    if (kind == "neighbourhood") {
      gs.neighbourhood = true;
      gs.range = d["range"].cast<double>();
      gs.body_order = d.contains("body_order") ? d["body_order"].cast<int>() : 0;
    }
  } else {
    throw py::value_error("unknown gate kind '" + kind + "' (known: structure, atom, neighbourhood)");
  }
  return gs;
}

py::dict one_gate_to_dict(const Gate& g, int M) {
  py::dict d;
  d["temperature"] = g.temperature;
  d["mean"] = vec_array(g.mean, {(py::ssize_t)g.mean.size()});
  d["scale"] = vec_array(g.scale, {(py::ssize_t)g.scale.size()});
  d["projection"] = vec_array(g.projection, {g.dim_out, g.dim_in});
  d["centroids"] = vec_array(g.centroids, {M, g.dim_out});
  d["spread"] = vec_array(g.spread, {M});
  d["bias"] = vec_array(g.bias, {M});
  return d;
}

Baseline baseline_from_dict(const py::object& o) {
  Baseline b;
  if (o.is_none()) return b;
  py::dict d = o.cast<py::dict>();
  b.atomic_numbers = to_vec<double>(d["atomic_numbers"]);
  if (d.contains("density_cutoff") && !d["density_cutoff"].is_none()) {
    b.density_cutoff = d["density_cutoff"].cast<double>();
    b.rho_lo = to_vec<double>(d["rho_lo"]);
    b.rho_hi = to_vec<double>(d["rho_hi"]);
  }
  if (d.contains("pair_shift") && !d["pair_shift"].is_none()) b.pair_shift = to_vec<double>(d["pair_shift"]);
  if (d.contains("density_wall") && !d["density_wall"].is_none()) {   // S x 2: (level, slope) per species
    const std::vector<double> w = to_vec<double>(d["density_wall"]);
    if (w.size() % 2) throw InputError("density_wall: one (level, slope) pair per element");
    for (size_t k = 0; k < w.size(); k += 2) {
      b.wall_level.push_back(w[k]);
      b.wall_slope.push_back(w[k + 1]);
    }
  }
  return b;
}

py::object baseline_to_dict(const Baseline& b) {
  if (!b.enabled()) return py::none();
  py::dict d;
  d["atomic_numbers"] = b.atomic_numbers;
  if (b.has_density_core()) {
    d["density_cutoff"] = b.density_cutoff;
    d["rho_lo"] = b.rho_lo;
    d["rho_hi"] = b.rho_hi;
  } else {
    d["density_cutoff"] = py::none();
  }
  d["pair_shift"] = b.pair_shift.empty() ? py::object(py::none()) : py::cast(b.pair_shift);
  if (b.has_density_wall()) {
    std::vector<std::vector<double>> w;
    for (size_t s = 0; s < b.wall_level.size(); ++s) w.push_back({b.wall_level[s], b.wall_slope[s]});
    d["density_wall"] = w;
  } else {
    d["density_wall"] = py::none();
  }
  return d;
}

py::dict gate_to_dict(const Potential& p) {
  const int M = p.n_experts();
  if (M == 1) return py::dict();
  if (p.local_gate()) {
    py::dict d;
    py::list species;
    for (const Gate& g : p.local_gates()) species.append(one_gate_to_dict(g, M));
    d["kind"] = gate_kind_name(p.gate_kind());
    if (p.gate_kind() == GateKind::Neighbourhood) {
      d["range"] = p.gate_range();
      d["body_order"] = p.gate_body_order();
    }
    d["temperature"] = p.local_gates()[0].temperature;
    d["species"] = species;
    return d;
  }
  py::dict d = one_gate_to_dict(p.gate(), M);
  d["kind"] = "structure";
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "dcace C++ core: ACE basis, DC gate and potential file";
  m.attr("__version__") = DCACE_VERSION;
  py::register_exception<FileError>(m, "PotentialFileError", PyExc_ValueError);

  m.def(
      "core_density",
      [](carray<int64_t> first, carray<double> rij, double r_rho) {
        const py::ssize_t n = first.size() - 1;
        if (n < 0 || rij.size() != 3 * first.data()[n]) throw py::value_error("first and rij are inconsistent");
        py::array_t<double> rho(n);
        for (py::ssize_t i = 0; i < n; ++i) {
          const int64_t b = first.data()[i];
          rho.mutable_data()[i] = core_density(r_rho, static_cast<int>(first.data()[i + 1] - b), rij.data() + 3 * b, nullptr);
        }
        return rho;
      },
      py::arg("first"), py::arg("rij"), py::arg("r_rho"),
      "Core density rho_i = sum_j (1 - r_ij^2/r_rho^2)^6 of every atom of a CSR neighbour list (baseline.hpp).");

  m.def(
      "real_sph_harm",
      [](int l_max, carray<double> r) {
        if (r.ndim() != 2 || r.shape(1) != 3) throw py::value_error("r must have shape (n, 3)");
        if (l_max < 0 || l_max > kMaxL)
          throw py::value_error("real_sph_harm: l_max must be in 0.." + std::to_string(kMaxL) + ", got " + std::to_string(l_max));
        const py::ssize_t n = r.shape(0), nY = (l_max + 1) * (l_max + 1);
        py::array_t<double> Y({n, nY}), dY({n, nY, (py::ssize_t)3});
        for (py::ssize_t i = 0; i < n; ++i)
          real_sph_harm(l_max, r.data() + 3 * i, Y.mutable_data() + i * nY, dY.mutable_data() + i * nY * 3);
        return py::make_tuple(Y, dY);
      },
      py::arg("l_max"), py::arg("r"), "Real spherical harmonics Y (n, (l_max+1)^2) and dY/dr (n, (l_max+1)^2, 3).");

  m.def(
      "gate_weights",
      [](const py::dict& gate, carray<double> P, bool gradient) {
        // the structure gate of a fit (clustering.gate_dict) on rows of P (n, D)
        if (P.ndim() != 2) throw py::value_error("gate_weights: P must have shape (n, D)");
        const py::ssize_t n = P.shape(0), D = P.shape(1);
        auto C = carray<double>::ensure(gate["centroids"]);
        if (!C || C.ndim() != 2) throw py::value_error("gate_weights: gate centroids must have shape (M, d)");
        const int M = static_cast<int>(C.shape(0));
        const Gate g = one_gate_from_dict(gate, M, static_cast<int>(D), gate["temperature"].cast<double>());
        check_gate(g, static_cast<size_t>(D), M, "gate", "P.shape[1]");
        py::array_t<double> w({n, (py::ssize_t)M}), near(n);
        py::object dw_out = py::none();
        double* pw = w.mutable_data();
        double* pn = near.mutable_data();
        if (!gradient) {
          for (py::ssize_t i = 0; i < n; ++i) g.evaluate_projected(P.data() + i * D, pw + i * M, nullptr, pn + i);
        } else if (M == 1) {   // w = 1, dw/dp = 0; the nearest distance all the same
          py::array_t<double> dw({n, (py::ssize_t)1, D});
          std::fill(dw.mutable_data(), dw.mutable_data() + dw.size(), 0.0);
          for (py::ssize_t i = 0; i < n; ++i) g.evaluate_projected(P.data() + i * D, pw + i, nullptr, pn + i);
          dw_out = dw;
        } else {
          py::array_t<double> dw({n, (py::ssize_t)M, D});
          for (py::ssize_t i = 0; i < n; ++i)
            g.evaluate(P.data() + i * D, pw + i * M, dw.mutable_data() + i * M * D, pn + i);
          dw_out = dw;
        }
        return py::make_tuple(w, dw_out, near);
      },
      py::arg("gate"), py::arg("P"), py::arg("gradient") = true,
      "The structure gate (a dict: mean, scale, projection, centroids, spread, bias, temperature) on rows "
      "of P (n, D): w (n, M), dw/dp (n, M, D) or None unless gradient, nearest-centroid distance (n,).");

  m.def(
      "committee_combine",
      [](carray<double> theta, carray<double> w, carray<double> dw, carray<double> b, carray<double> n) {
        // a fit's committee (theta = [c_m, e0_m] per row, centred frame) on structures' sums b, n
        if (theta.ndim() != 2 || b.ndim() != 2 || n.ndim() != 2)
          throw py::value_error("committee_combine: theta, b and n must be 2-D");
        const py::ssize_t M = theta.shape(0), B = b.shape(0), D = b.shape(1), S = n.shape(1);
        check_shape(theta, "committee_combine", "theta", "(M, D + S)", {{M, D + S}});
        check_shape(n, "committee_combine", "n", "(B, S)", {{B, S}});
        check_shape(w, "committee_combine", "w", "(B, M)", {{B, M}});
        check_shape(dw, "committee_combine", "dw", "(B, M, D)", {{B, M, D}});
        py::array_t<double> E(B), c_eff({B, D});
        std::vector<double> Em(M);
        const double* th = theta.data();
        for (py::ssize_t i = 0; i < B; ++i) {
          const double *bi = b.data() + i * D, *ni = n.data() + i * S;
          double N = 0.0;
          for (py::ssize_t s = 0; s < S; ++s) N += ni[s];
          for (py::ssize_t m = 0; m < M; ++m) {
            const double* t = th + m * (D + S);
            double e = 0.0;
            for (py::ssize_t k = 0; k < D; ++k) e += t[k] * bi[k];
            for (py::ssize_t s = 0; s < S; ++s) e += t[D + s] * ni[s];
            Em[m] = e;
          }
          E.mutable_data()[i] = combine_committee(static_cast<int>(M), static_cast<size_t>(D), th,
                                                  static_cast<size_t>(D + S), w.data() + i * M, dw.data() + i * M * D,
                                                  Em.data(), N, c_eff.mutable_data() + i * D);
        }
        return py::make_tuple(E, c_eff);
      },
      py::arg("theta"), py::arg("w"), py::arg("dw"), py::arg("b"), py::arg("n"),
      "Eq. 7 for B structures: theta (M, D + S) experts [c_m, e0_m], gate weights w (B, M) and dw/dp "
      "(B, M, D) at p = b / N, descriptor sums b (B, D), species counts n (B, S); returns E (B,), c_eff (B, D).");

  py::class_<ACEBasis, std::shared_ptr<ACEBasis>>(m, "BasisCore")
      .def(py::init([](const py::dict& spec) { return std::make_shared<ACEBasis>(spec_from_dict(spec)); }))
      .def_property_readonly("n_features", &ACEBasis::n_features)
      .def_property_readonly("n_species", &ACEBasis::n_species)
      .def_property_readonly("n_monomials", &ACEBasis::n_monomials)
      .def_property_readonly("n_A", &ACEBasis::n_A)
      .def_property_readonly("cutoff", &ACEBasis::cutoff)
      .def("spec", [](const ACEBasis& b) { return spec_to_dict(b.spec()); })
      .def("radial",
           [](const ACEBasis& b, carray<double> r) {
             const int nr = b.spec().n_radial;
             py::array_t<double> R({r.size(), (py::ssize_t)nr}), dR({r.size(), (py::ssize_t)nr});
             for (py::ssize_t i = 0; i < r.size(); ++i)
               b.radial(r.data()[i], R.mutable_data() + i * nr, dR.mutable_data() + i * nr);
             return py::make_tuple(R, dR);
           })
      .def("monomial_weights",
           [](const ACEBasis& b, carray<double> c) {
             if (c.size() != b.n_features()) throw py::value_error("expected n_features coefficients");
             py::array_t<double> w(b.n_monomials());
             b.monomial_weights(c.data(), w.mutable_data());
             return w;
           })
      .def("descriptors",
           [](const ACEBasis& b, py::handle sp, py::handle fi, py::handle jj, py::handle r) {
             NL nl(sp, fi, jj, r);
             py::array_t<double> B({(py::ssize_t)nl.view.n_atoms, (py::ssize_t)b.n_features()});
             double* out = B.mutable_data();
             {
               py::gil_scoped_release nogil;
               structure_descriptors(b, nl.view, out);
             }
             return B;
           },
           "Per-atom descriptors (n_atoms, K) from a CSR neighbour list (species, first, j, rij).")
      .def("neighbourhood_descriptors",
           [](const ACEBasis& b, py::handle sp, py::handle fi, py::handle jj, py::handle r, double r_g) {
             NL nl(sp, fi, jj, r);
             py::array_t<double> P({(py::ssize_t)nl.view.n_atoms, (py::ssize_t)b.n_features()});
             double* out = P.mutable_data();
             {
               py::gil_scoped_release nogil;
               neighbourhood_descriptors(b, nl.view, r_g, out);
             }
             return P;
           },
           "The neighbourhood gate's p_i (n_atoms, K): B averaged over the atom and its same-species "
           "neighbours closer than r_g with weights (1 + cos(pi r / r_g)) / 2 (the atom's own weight 1).")
      .def("descriptor_sums",
           [](const ACEBasis& b, py::handle sp, py::handle fi, py::handle jj, py::handle r) {
             NL nl(sp, fi, jj, r);
             py::array_t<double> B({(py::ssize_t)b.n_species(), (py::ssize_t)b.n_features()});
             py::array_t<double> c(b.n_species());
             double *pb = B.mutable_data(), *pc = c.mutable_data();
             {
               py::gil_scoped_release nogil;
               structure_descriptor_sums(b, nl.view, pb, pc);
             }
             return py::make_tuple(B, c);
           })
      .def("fitting_rows",
           [](const ACEBasis& b, py::handle sp, py::handle fi, py::handle jj, py::handle r) {
             NL nl(sp, fi, jj, r);
             const py::ssize_t SK = (py::ssize_t)b.n_species() * b.n_features(), N = nl.view.n_atoms;
             py::array_t<double> e(SK), f({3 * N, SK}), v({(py::ssize_t)6, SK});
             double *pe = e.mutable_data(), *pf = f.mutable_data(), *pv = v.mutable_data();
             {
               py::gil_scoped_release nogil;
               structure_fitting_rows(b, nl.view, pe, pf, pv);
             }
             return py::make_tuple(e, f, v);
           },
           "Energy row (S*K), force rows (3N, S*K), virial rows (6, S*K; Voigt xx yy zz yz xz xy).")
      .def("energy_forces",
           [](const ACEBasis& b, py::handle sp, py::handle fi, py::handle jj, py::handle r, carray<double> coef,
              carray<double> e0) {
             NL nl(sp, fi, jj, r);
             const int S = b.n_species(), K = b.n_features();
             check_shape(coef, "energy_forces", "coef", "(n_species, n_features)", {{S, K}, {(py::ssize_t)S * K}});
             check_shape(e0, "energy_forces", "e0", "(n_species,)", {{S}});
             std::vector<double> w(static_cast<size_t>(S) * b.n_monomials());
             for (int s = 0; s < S; ++s) b.monomial_weights(coef.data() + s * K, w.data() + s * b.n_monomials());
             const py::ssize_t N = nl.view.n_atoms;
             py::array_t<double> en(N), f({N, (py::ssize_t)3}), v(6);
             double *pe = en.mutable_data(), *pf = f.mutable_data(), *pv = v.mutable_data();
             double E;
             {
               py::gil_scoped_release nogil;
               E = structure_energy_forces(b, nl.view, w.data(), e0.data(), pe, pf, pv);
             }
             return py::make_tuple(E, en, f, v);
           })
      .def("atom_descriptors",
           [](const ACEBasis& b, carray<double> rij, carray<int> zj, int zi) {
             check_shape(zj, "atom_descriptors", "zj", "(n_neighbours,)", {{zj.size()}});
             check_shape(rij, "atom_descriptors", "rij", "(n_neighbours, 3) with n_neighbours = len(zj)", {{zj.size(), 3}});
             Workspace ws;
             py::array_t<double> B(b.n_features());
             b.descriptors(zi, static_cast<int>(zj.size()), rij.data(), zj.data(), B.mutable_data(), ws);
             return B;
           },
           py::arg("rij"), py::arg("zj"), py::arg("zi") = 0)
      .def("atom_energy_gradient",
           [](const ACEBasis& b, carray<double> rij, carray<int> zj, carray<double> coef, bool two_pass, int zi) {
             check_shape(zj, "atom_energy_gradient", "zj", "(n_neighbours,)", {{zj.size()}});
             check_shape(rij, "atom_energy_gradient", "rij", "(n_neighbours, 3) with n_neighbours = len(zj)", {{zj.size(), 3}});
             check_shape(coef, "atom_energy_gradient", "coef", "(n_features,)", {{b.n_features()}});
             Workspace ws;
             const int n = static_cast<int>(zj.size());
             std::vector<double> w(b.n_monomials());
             b.monomial_weights(coef.data(), w.data());
             py::array_t<double> g({(py::ssize_t)n, (py::ssize_t)3}), B(b.n_features());
             double E;
             if (two_pass) {  // the LAMMPS DC path: values-only pass 1, then pass 2 from the kept A
               b.monomials(zi, n, rij.data(), zj.data(), ws);
               b.features_from_monomials(ws.mono.data(), B.mutable_data());
               std::vector<double> A = ws.A;
               E = b.energy_gradient_from_A(zi, n, rij.data(), zj.data(), A.data(), w.data(), g.mutable_data(), ws);
             } else {
               b.descriptors(zi, n, rij.data(), zj.data(), B.mutable_data(), ws);
               E = b.energy_gradient(zi, n, rij.data(), zj.data(), w.data(), g.mutable_data(), ws);
             }
             return py::make_tuple(E, g, B);
           },
           py::arg("rij"), py::arg("zj"), py::arg("coef"), py::arg("two_pass") = false, py::arg("zi") = 0,
           "Energy c.B_i, dE/dr_ij (n, 3) and B_i of one atom (two_pass: the pass-1/pass-2 route).")
      .def("atom_descriptor_gradients", [](const ACEBasis& b, carray<double> rij, carray<int> zj, int zi) {
        check_shape(zj, "atom_descriptor_gradients", "zj", "(n_neighbours,)", {{zj.size()}});
        check_shape(rij, "atom_descriptor_gradients", "rij", "(n_neighbours, 3) with n_neighbours = len(zj)", {{zj.size(), 3}});
        Workspace ws;
        const py::ssize_t n = zj.size(), K = b.n_features();
        py::array_t<double> B(K), dB({n, (py::ssize_t)3, K});
        b.descriptor_gradients(zi, static_cast<int>(n), rij.data(), zj.data(), B.mutable_data(), dB.mutable_data(), ws);
        return py::make_tuple(B, dB);
      }, py::arg("rij"), py::arg("zj"), py::arg("zi") = 0);

  py::class_<Potential, std::shared_ptr<Potential>>(m, "PotentialCore")
      .def(py::init([](std::vector<std::string> elements, const py::dict& spec, carray<double> coef, carray<double> e0,
                       int n_experts, const py::object& gate, std::string metadata, const py::object& core) {
             BasisSpec s = spec_from_dict(spec);
             const int S = s.n_species, K = s.n_features;
             GateSpec g = gate_from_dict(gate, n_experts, S, K);
             Baseline bl = baseline_from_dict(core);
             auto pot = std::make_shared<Potential>(std::move(elements), std::move(s),
                                                std::vector<double>(coef.data(), coef.data() + coef.size()),
                                                std::vector<double>(e0.data(), e0.data() + e0.size()), n_experts,
                                                std::move(g.gate), std::move(metadata), std::move(bl), g.kind,
                                                std::move(g.local));
             if (g.neighbourhood)
               pot->set_neighbourhood(g.range, g.body_order);
             return pot;
           }),
           py::arg("elements"), py::arg("spec"), py::arg("coefficients"), py::arg("one_body"), py::arg("n_experts"),
           py::arg("gate"), py::arg("metadata"), py::arg("short_range") = py::none(),
           "short_range: None, or the short-range core {atomic_numbers: per element (ZBL; the spec needs core "
           "windows), density_cutoff, rho_lo, rho_hi (per element; optional density core)}.")
      .def_static("read", [](const std::string& p) { return std::make_shared<Potential>(Potential::read(p)); })
      .def_static("parse", [](const std::string& t, const std::string& name) {
        return std::make_shared<Potential>(Potential::parse(t, name));
      })
      .def("write", &Potential::write)
      .def_property_readonly("elements", &Potential::elements)
      .def_property_readonly("n_experts", &Potential::n_experts)
      .def_property_readonly("n_species", &Potential::n_species)
      .def_property_readonly("n_features", &Potential::n_features)
      .def_property_readonly("cutoff", &Potential::cutoff)
      .def_property_readonly("metadata", &Potential::metadata)
      .def_property_readonly("short_range", [](const Potential& p) { return baseline_to_dict(p.baseline()); },
                             "The short-range core as a dict (see __init__), or None without one.")
      .def_property_readonly("basis", [](const Potential& p) { return std::make_shared<ACEBasis>(p.basis()); })
      .def("spec", [](const Potential& p) { return spec_to_dict(p.basis().spec()); })
      .def_property_readonly("coefficients",
                             [](const Potential& p) {
                               return vec_array(p.coefficients(), {p.n_experts(), p.n_species(), p.n_features()});
                             })
      .def_property_readonly("one_body",
                             [](const Potential& p) { return vec_array(p.one_body(), {p.n_experts(), p.n_species()}); })
      .def("gate", [](const Potential& p) { return gate_to_dict(p); })
      .def_property_readonly("gate_kind", [](const Potential& p) { return std::string(gate_kind_name(p.gate_kind())); },
                             "none (one expert), structure (the paper's gate), atom (local gate on B_i) or neighbourhood (local gate on "
                             "the neighbourhood average p_i)")
      .def("gate_weights",
           [](const Potential& p, carray<double> x) {
             const int M = p.n_experts();
             if (p.local_gate()) throw py::value_error(std::string("gate_weights is the structure gate's; this potential has an ") + gate_kind_name(p.gate_kind()) + " gate");
             const py::ssize_t D = (py::ssize_t)p.n_species() * p.n_features();
             if (x.size() != D) throw py::value_error("p must have n_species * n_features values");
             py::array_t<double> w(M), dw({(py::ssize_t)M, D});
             double nearest = 0.0;
             p.gate().evaluate(x.data(), w.mutable_data(), dw.mutable_data(), &nearest);
             return py::make_tuple(w, dw, nearest);
           },
           "Gate weights w (M), dw/dp (M, S*K) and nearest-centroid distance for a mean descriptor p.")
      .def("combine",
           [](const Potential& p, carray<double> Bsum, carray<double> counts) {
             const py::ssize_t S = p.n_species(), K = p.n_features();
             check_shape(Bsum, "combine", "Bsum", "(n_species, n_features)", {{S, K}, {S * K}});
             check_shape(counts, "combine", "counts", "(n_species,)", {{S}});
             Combination c;
             p.combine(Bsum.data(), counts.data(), c);
             return combination_dict(c, p.n_species(), p.n_features());
           })
      .def("compute", [](const Potential& p, py::handle sp, py::handle fi, py::handle jj, py::handle r) {
        NL nl(sp, fi, jj, r);
        const py::ssize_t N = nl.view.n_atoms;
        py::array_t<double> en(N), f({N, (py::ssize_t)3}), v(6), va({N, (py::ssize_t)6}),
            aw({N, (py::ssize_t)p.n_experts()});
        double *pe = en.mutable_data(), *pf = f.mutable_data(), *pv = v.mutable_data(), *pva = va.mutable_data();
        double* paw = aw.mutable_data();
        Combination c;
        double E;
        {
          py::gil_scoped_release nogil;
          E = p.compute(nl.view, pe, pf, pv, c, pva, paw);
        }
        py::dict d = combination_dict(c, p.n_species(), p.n_features());
        d["energy"] = E;
        d["energies"] = en;
        d["forces"] = f;
        d["virial"] = v;
        d["virials"] = va;  // per-atom virials (N, 6), Voigt xx yy zz yz xz xy, sum = virial
        d["atom_weights"] = aw;  // (N, M) gate weights of every atom
        return d;
      })
      .def("local_fitting_rows", [](const Potential& p, py::handle sp, py::handle fi, py::handle jj, py::handle r,
                                    std::vector<double> temperatures) {
        NL nl(sp, fi, jj, r);
        const py::ssize_t nc = (py::ssize_t)p.n_experts() * p.n_species() * (p.n_features() + 1), N = nl.view.n_atoms;
        const py::ssize_t nT = temperatures.empty() ? 1 : (py::ssize_t)temperatures.size();
        py::array_t<double> e({nT, nc}), f({nT, 3 * N, nc}), v({nT, (py::ssize_t)6, nc});
        double *pe = e.mutable_data(), *pf = f.mutable_data(), *pv = v.mutable_data();
        {
          py::gil_scoped_release nogil;
          p.local_fitting_rows(nl.view, temperatures, pe, pf, pv);
        }
        if (temperatures.empty()) {
          py::object e1 = e[py::int_(0)], f1 = f[py::int_(0)], v1 = v[py::int_(0)];
          return py::make_tuple(e1, f1, v1);
        }
        py::object eo = e, fo = f, vo = v;
        return py::make_tuple(eo, fo, vo);
      }, py::arg("species"), py::arg("first"), py::arg("j"), py::arg("rij"), py::arg("temperatures") = std::vector<double>(),
         "Local-gate (atom or neighbourhood) committee rows for its fixed gate: energy (n_cols), forces (3N, n_cols), virial (6, n_cols); "
         "with temperatures (T,) the same gate's rows at each, with a leading axis T; "
         "columns: expert m's block [c_m (S*K), e0_m (S)].")
      // extrapolation grade (cpp/src/grade.cpp)
      .def_property_readonly("has_grade", &Potential::has_grade)
      .def("grade_matrices",
           [](const Potential& p) {
             py::list out;
             if (!p.has_grade()) return out;
             const Grade& g = p.grade();
             for (size_t s = 0; s < g.G.size(); ++s)
               out.append(vec_array(g.G[s], {(py::ssize_t)p.n_features(), (py::ssize_t)g.rank[s]}));
             return out;
           },
           "Per-species grade matrices G_s (K, r_s); an empty list if the potential has no grade.")
      .def("set_grade",
           [](Potential& p, const py::list& mats) {
             Grade g;
             for (const auto& m : mats) {
               auto a = carray<double>::ensure(m);
               if (!a || a.ndim() != 2) throw py::value_error("each grade matrix must be a 2-D array (K, r)");
               if (a.shape(0) != p.n_features())
                 throw py::value_error("grade matrices must have n_features = " + std::to_string(p.n_features()) +
                                       " rows, got " + std::to_string(a.shape(0)));
               g.rank.push_back(static_cast<int>(a.shape(1)));
               g.G.emplace_back(a.data(), a.data() + a.size());
             }
             p.set_grade(std::move(g));
           },
           py::arg("matrices"), "Attach the extrapolation grade: one (K, r_s) matrix per species.")
      .def("extrapolation", [](const Potential& p, py::handle sp, py::handle fi, py::handle jj, py::handle r) {
        NL nl(sp, fi, jj, r);
        py::array_t<double> g(nl.view.n_atoms);
        double* pg = g.mutable_data();
        {
          py::gil_scoped_release nogil;
          p.extrapolation(nl.view, pg);
        }
        return g;
      }, "Per-atom extrapolation grade gamma (n_atoms,) of a structure.");
}
