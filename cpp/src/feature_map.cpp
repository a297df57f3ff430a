// The sparse map between an atom's monomials and its features, read both ways.  The feature rows
// (BasisSpec::feat_*) give B = F mono; their transpose, built once here, gives the per-monomial
// weights w = F^T c of a coefficient vector as a gather (no zero fill, no scatter) and B straight
// from A (each monomial's product added to its features, nothing stored): the two conversions the
// atom gate makes for every atom (local_gate.cpp).
#include <algorithm>
#include <vector>

#include "dcace/ace_basis.hpp"

namespace dcace {

void ACEBasis::build_feature_transpose() {
  const BasisSpec& s = spec_;
  mono_feat_ptr_.assign(static_cast<size_t>(n_mono_) + 1, 0);
  for (int m : s.feat_mono) ++mono_feat_ptr_[m + 1];
  for (int t = 0; t < n_mono_; ++t) mono_feat_ptr_[t + 1] += mono_feat_ptr_[t];
  mono_feat_.resize(s.feat_mono.size());
  mono_feat_coef_.resize(s.feat_mono.size());
  std::vector<int> next(mono_feat_ptr_.begin(), mono_feat_ptr_.end() - 1);
  for (int v = 0; v < s.n_features; ++v)
    for (int p = s.feat_ptr[v]; p < s.feat_ptr[v + 1]; ++p) {
      const int q = next[s.feat_mono[p]]++;
      mono_feat_[q] = v;
      mono_feat_coef_[q] = s.feat_coef[p];
    }
  one_feature_each_ = true;
  for (int t = 0; t < n_mono_; ++t) one_feature_each_ = one_feature_each_ && mono_feat_ptr_[t + 1] == t + 1;
}

void ACEBasis::monomial_weights(const double* coef, double* w) const {
  const int* f = mono_feat_.data();
  const double* c = mono_feat_coef_.data();
  if (one_feature_each_) {
    for (int t = 0; t < n_mono_; ++t) w[t] = c[t] * coef[f[t]];
    return;
  }
  for (int t = 0; t < n_mono_; ++t) {
    double s = 0.0;
    for (int q = mono_feat_ptr_[t]; q < mono_feat_ptr_[t + 1]; ++q) s += c[q] * coef[f[q]];
    w[t] = s;
  }
}

void ACEBasis::features_from_A(const double* A, double* B) const {
  std::fill(B, B + spec_.n_features, 0.0);
  const int* f = mono_feat_.data();
  const double* c = mono_feat_coef_.data();
  if (one_feature_each_) {   // (the test outside the monomial loop)
    for_each_monomial(A, [&](int t, double value) { B[f[t]] += c[t] * value; });
    return;
  }
  for_each_monomial(A, [&](int t, double value) {
    for (int q = mono_feat_ptr_[t]; q < mono_feat_ptr_[t + 1]; ++q) B[f[q]] += c[q] * value;
  });
}

}  // namespace dcace
