// Python bindings of the native core: the only file that includes pybind11.
// Module edgespec._native (engine, specs, runtime loading), edgespec._native.spec (pure
// acceptance math, for tests) and edgespec._native.ops (the row-attention kernel, for tests).
// std::invalid_argument → ValueError, std::runtime_error → RuntimeError (pybind11's default
// translation).
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "draft_policy.h"
#include "edgespec/engine.h"
#include "lookup.h"
#include "ngram_table.h"
#include "ops/block_offset.h"
#include "ops/fmatmul.h"
#include "ops/fmatmul_simd.h"
#include "ops/qmatmul.h"
#include "ops/qmatmul_simd.h"
#include "ops/row_attention.h"
#include "spec_math.h"

namespace py = pybind11;
using namespace edgespec;

namespace {

// A cancellation flag Python can flip from any thread while generate() runs without the GIL.
struct CancelToken {
  std::atomic<bool> flag{false};
};

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IntArray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

template <class T>
std::vector<T> to_vector(const py::array_t<T, py::array::c_style | py::array::forcecast>& a) {
  if (a.ndim() != 1) throw py::value_error("expected a 1-D array, got " + std::to_string(a.ndim()));
  return std::vector<T>(a.data(), a.data() + a.size());
}

// T(**kwargs): sets each keyword through the bound attribute (unknown names → TypeError).
template <class T>
std::unique_ptr<T> from_kwargs(const py::kwargs& kwargs) {
  auto obj = std::make_unique<T>();
  py::object view = py::cast(obj.get(), py::return_value_policy::reference);
  for (auto item : kwargs) {
    const std::string key = py::str(item.first);
    if (key.empty() || key[0] == '_' || !py::hasattr(view, item.first)) {
      throw py::type_error("unexpected keyword argument '" + key + "'");
    }
    py::setattr(view, item.first, item.second);
  }
  return obj;
}

// "Name(a=1, b='x')" from the listed attributes.
std::string repr_of(py::handle self, const char* name, const std::vector<const char*>& fields) {
  std::string out = std::string(name) + "(";
  for (size_t i = 0; i < fields.size(); ++i) {
    out += (i ? ", " : "") + std::string(fields[i]) + "=" +
           py::repr(self.attr(fields[i])).cast<std::string>();
  }
  return out + ")";
}

template <class Cls>
void add_repr(Cls& cls, const char* name, std::vector<const char*> fields) {
  cls.def("__repr__", [name, fields](py::handle self) { return repr_of(self, name, fields); });
}

// A prompt given as a sequence of ints or a 1-D integer numpy array → int32 token ids.
std::vector<int32_t> to_ids(py::handle obj) {
  py::array arr = py::array::ensure(obj);
  if (!arr) throw py::type_error("prompt must be a sequence of ints or an integer numpy array");
  if (arr.ndim() != 1) {
    throw py::value_error("prompt must be 1-D, got " + std::to_string(arr.ndim()) + " dimensions");
  }
  std::vector<int32_t> ids;
  if (arr.size() == 0) return ids;
  const char kind = arr.dtype().kind();
  if (kind != 'i' && kind != 'u') {
    throw py::type_error("prompt tokens must be integers, got dtype " +
                         py::str(arr.dtype()).cast<std::string>());
  }
  auto wide = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
  const int64_t* data = wide.data();
  ids.resize(static_cast<size_t>(wide.size()));
  for (size_t i = 0; i < ids.size(); ++i) {
    if (data[i] < 0 || data[i] > std::numeric_limits<int32_t>::max()) {
      throw py::value_error("prompt token " + std::to_string(data[i]) + " at position " +
                            std::to_string(i) + " is outside the vocabulary");
    }
    ids[i] = static_cast<int32_t>(data[i]);
  }
  return ids;
}

GenResult generate(Engine& engine, py::handle prompt, const GenConfig& cfg, py::object on_chunk,
                   CancelToken* cancel) {
  const std::vector<int32_t> ids = to_ids(prompt);
  std::optional<py::error_already_set> error;  // the callback's exception, re-raised afterwards
  ChunkCallback callback;
  if (!on_chunk.is_none()) {
    callback = [&on_chunk, &error](const int32_t* tokens, int n) -> bool {
      py::gil_scoped_acquire gil;
      try {
        py::list chunk(n);
        for (int i = 0; i < n; ++i) chunk[i] = py::int_(tokens[i]);
        py::object stop = on_chunk(chunk);
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();  // e.g. Ctrl-C
        const int truth = stop.is_none() ? 0 : PyObject_IsTrue(stop.ptr());
        if (truth < 0) throw py::error_already_set();
        return truth == 1;
      } catch (py::error_already_set& e) {
        error = std::move(e);
        return true;  // stop generation; the exception is raised after generate returns
      }
    };
  }
  GenResult result;
  {
    py::gil_scoped_release release;
    result = engine.generate(ids, cfg, callback, cancel ? &cancel->flag : nullptr);
  }
  if (error) throw *error;
  return result;
}

void bind_specs(py::module_& m) {
  py::class_<ModelSpec> model(m, "ModelSpec", "One decoder graph as described by the manifest.");
  model.def(py::init(&from_kwargs<ModelSpec>))
      .def_readwrite("path", &ModelSpec::path)
      .def_readwrite("num_layers", &ModelSpec::num_layers)
      .def_readwrite("num_kv_heads", &ModelSpec::num_kv_heads)
      .def_readwrite("head_dim", &ModelSpec::head_dim)
      .def_readwrite("vocab_size", &ModelSpec::vocab_size)
      .def_readwrite("capacity", &ModelSpec::capacity)
      .def_readwrite("kv_dtype", &ModelSpec::kv_dtype)
      .def_readwrite("logits_dtype", &ModelSpec::logits_dtype)
      .def_readwrite("input_ids", &ModelSpec::input_ids)
      .def_readwrite("seqlens_k", &ModelSpec::seqlens_k)
      .def_readwrite("total_sequence_length", &ModelSpec::total_sequence_length)
      .def_readwrite("past_key", &ModelSpec::past_key)
      .def_readwrite("past_value", &ModelSpec::past_value)
      .def_readwrite("present_key", &ModelSpec::present_key)
      .def_readwrite("present_value", &ModelSpec::present_value)
      .def_readwrite("logits", &ModelSpec::logits)
      .def_readwrite("logits_to_keep", &ModelSpec::logits_to_keep)
      .def_readwrite("tree_parents", &ModelSpec::tree_parents)
      .def_readwrite("hidden_size", &ModelSpec::hidden_size)
      .def_readwrite("features", &ModelSpec::features)
      .def_readwrite("hidden_states", &ModelSpec::hidden_states)
      .def_readwrite("token_map", &ModelSpec::token_map)
      .def_readwrite("reuse_prefix", &ModelSpec::reuse_prefix);
  add_repr(model, "ModelSpec",
           {"path", "num_layers", "num_kv_heads", "head_dim", "vocab_size", "capacity", "kv_dtype",
            "logits_dtype"});

  using U64 = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
  using U32 = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>;
  py::class_<NgramTable>(m, "NgramTable", "The bundle's n-gram table (validated by the Engine).")
      .def(py::init([](const U64& keys, const IntArray& next, const U32& hits, const U32& total,
                       int n_min, int n_max) {
             auto t = std::make_unique<NgramTable>();
             t->keys = to_vector(keys);
             t->next = to_vector(next);
             t->hits = to_vector(hits);
             t->total = to_vector(total);
             t->n_min = n_min;
             t->n_max = n_max;
             return t;
           }),
           py::arg("keys"), py::arg("next"), py::arg("hits"), py::arg("total"), py::arg("n_min"),
           py::arg("n_max"))
      .def_property_readonly("entries", [](const NgramTable& t) { return t.keys.size(); })
      .def_readonly("n_min", &NgramTable::n_min)
      .def_readonly("n_max", &NgramTable::n_max);

  py::class_<ProviderSpec> prov(m, "ProviderSpec", "Where and how a model runs.");
  prov.def(py::init(&from_kwargs<ProviderSpec>))
      .def_readwrite("name", &ProviderSpec::name)
      .def_readwrite("threads", &ProviderSpec::threads)
      .def_readwrite("device_id", &ProviderSpec::device_id)
      .def_readwrite("trt_cache_dir", &ProviderSpec::trt_cache_dir)
      .def_readwrite("allow_fallback", &ProviderSpec::allow_fallback)
      .def_readwrite("prefill_chunk", &ProviderSpec::prefill_chunk);
  add_repr(prov, "ProviderSpec",
           {"name", "threads", "device_id", "trt_cache_dir", "allow_fallback", "prefill_chunk"});

  py::class_<GenConfig> cfg(m, "GenConfig", "Parameters of one generation.");
  cfg.def(py::init(&from_kwargs<GenConfig>))
      .def_readwrite("max_new_tokens", &GenConfig::max_new_tokens)
      .def_readwrite("temperature", &GenConfig::temperature)
      .def_readwrite("top_p", &GenConfig::top_p)
      .def_readwrite("top_k", &GenConfig::top_k)
      .def_readwrite("seed", &GenConfig::seed)
      .def_readwrite("drafter", &GenConfig::drafter)
      .def_readwrite("num_draft_tokens", &GenConfig::num_draft_tokens)
      .def_readwrite("adaptive", &GenConfig::adaptive)
      .def_readwrite("ngram_max", &GenConfig::ngram_max)
      .def_readwrite("ngram_min", &GenConfig::ngram_min)
      .def_readwrite("ngram_table", &GenConfig::ngram_table)
      .def_readwrite("copy_match", &GenConfig::copy_match)
      .def_readwrite("draft_confidence", &GenConfig::draft_confidence)
      .def_readwrite("sibling_min", &GenConfig::sibling_min)
      .def_readwrite("eos_ids", &GenConfig::eos_ids);
  add_repr(cfg, "GenConfig",
           {"max_new_tokens", "temperature", "top_p", "top_k", "seed", "drafter",
            "num_draft_tokens", "adaptive", "ngram_max", "ngram_min", "ngram_table", "copy_match",
            "draft_confidence", "sibling_min", "eos_ids"});
}

void bind_results(py::module_& m) {
  py::class_<GenStats> stats(m, "GenStats", "Counters and timings of one generation.");
  stats.def_readonly("n_prompt", &GenStats::n_prompt)
      .def_readonly("n_prompt_reused", &GenStats::n_prompt_reused)
      .def_readonly("n_generated", &GenStats::n_generated)
      .def_readonly("n_steps", &GenStats::n_steps)
      .def_readonly("n_draft", &GenStats::n_draft)
      .def_readonly("n_accept", &GenStats::n_accept)
      .def_readonly("accept_hist", &GenStats::accept_hist)
      .def_readonly("n_tree", &GenStats::n_tree)
      .def_readonly("n_off_chain", &GenStats::n_off_chain)
      .def_readonly("t_prefill_s", &GenStats::t_prefill_s)
      .def_readonly("t_draft_s", &GenStats::t_draft_s)
      .def_readonly("t_verify_s", &GenStats::t_verify_s)
      .def_readonly("t_total_s", &GenStats::t_total_s)
      .def_readonly("t_first_token_s", &GenStats::t_first_token_s);
  add_repr(stats, "GenStats",
           {"n_prompt", "n_prompt_reused", "n_generated", "n_steps", "n_draft", "n_accept",
            "accept_hist", "n_tree", "n_off_chain", "t_prefill_s", "t_draft_s", "t_verify_s",
            "t_total_s", "t_first_token_s"});

  py::class_<GenResult> result(m, "GenResult", "Committed tokens, finish reason and stats.");
  result.def_readonly("tokens", &GenResult::tokens)
      .def_readonly("finish_reason", &GenResult::finish_reason)
      .def_readonly("stats", &GenResult::stats);
  add_repr(result, "GenResult", {"tokens", "finish_reason", "stats"});

  py::class_<CancelToken>(m, "CancelToken", "Thread-safe flag that stops a running generate().")
      .def(py::init<>())
      .def("cancel", [](CancelToken& t) { t.flag.store(true); })
      .def("reset", [](CancelToken& t) { t.flag.store(false); })
      .def_property_readonly("cancelled", [](const CancelToken& t) { return t.flag.load(); });
}

void bind_engine(py::module_& m) {
  py::class_<Engine>(m, "Engine",
                     "Target (+ optional draft model and eagle head) and the draft→verify loop.")
      .def(py::init([](const ModelSpec& target, const std::optional<ModelSpec>& draft,
                       const ProviderSpec& target_provider,
                       const std::optional<ProviderSpec>& draft_provider,
                       const std::optional<ModelSpec>& eagle,
                       const std::optional<NgramTable>& table) {
             py::gil_scoped_release release;
             return std::make_unique<Engine>(target, draft.value_or(ModelSpec()), target_provider,
                                             draft_provider.value_or(target_provider),
                                             eagle.value_or(ModelSpec()),
                                             table.value_or(NgramTable()));
           }),
           py::arg("target"), py::arg("draft") = py::none(),
           py::arg("target_provider") = ProviderSpec(), py::arg("draft_provider") = py::none(),
           py::arg("eagle") = py::none(), py::arg("table") = py::none())
      .def_property_readonly("has_draft", &Engine::has_draft)
      .def_property_readonly("has_eagle", &Engine::has_eagle)
      .def_property_readonly("capacity", &Engine::capacity)
      .def("generate", &generate, py::arg("prompt"), py::arg("config") = GenConfig(),
           py::arg("on_chunk") = py::none(), py::arg("cancel") = nullptr)
      .def("forget", &Engine::forget, py::arg("keep") = 0,
           "Forget what earlier generations left past their first `keep` positions (0: all): the "
           "next generation prefills from there at the latest.");
}

// ---- edgespec._native.spec: the pure math, on numpy float32 arrays ----

void check_rows(const FloatArray& a, py::ssize_t rows, py::ssize_t cols, const char* what) {
  if (a.ndim() != 2 || a.shape(0) != rows || a.shape(1) != cols) {
    throw py::value_error(std::string(what) + " must have shape (" + std::to_string(rows) + ", " +
                          std::to_string(cols) + ")");
  }
}

FloatArray process_logits(const FloatArray& logits, float temperature, int top_k, float top_p) {
  if (logits.ndim() < 1 || logits.ndim() > 2 || logits.size() == 0) {
    throw py::value_error("logits must be a non-empty 1-D or 2-D array");
  }
  if (!(temperature >= 0) || top_k < 0 || !(top_p > 0 && top_p <= 1)) {
    throw py::value_error("need temperature >= 0, top_k >= 0, 0 < top_p <= 1");
  }
  const int n = static_cast<int>(logits.shape(logits.ndim() - 1));
  const py::ssize_t rows = logits.size() / n;
  FloatArray out(std::vector<py::ssize_t>(logits.shape(), logits.shape() + logits.ndim()));
  std::vector<int32_t> idx(n);
  const spec::SamplingParams sp{temperature, top_k, top_p};
  for (py::ssize_t r = 0; r < rows; ++r) {
    const float* in = logits.data() + r * n;
    float* probs = out.mutable_data() + r * n;
    if (temperature == 0) {  // greedy as a distribution: one-hot at the argmax
      std::fill(probs, probs + n, 0.0f);
      probs[spec::argmax(in, n)] = 1.0f;
    } else {
      spec::process_logits(in, n, sp, probs, idx.data());
    }
  }
  return out;
}

py::tuple accept_sampling(const FloatArray& p_rows, const std::optional<FloatArray>& q_rows,
                          const IntArray& draft, uint64_t seed) {
  const int k = static_cast<int>(draft.size());
  if (p_rows.ndim() != 2) throw py::value_error("p_rows must be 2-D (k+1, vocab)");
  const int n = static_cast<int>(p_rows.shape(1));
  check_rows(p_rows, k + 1, n, "p_rows");
  if (q_rows) check_rows(*q_rows, k, n, "q_rows");
  for (int i = 0; i < k; ++i) {
    if (draft.data()[i] < 0 || draft.data()[i] >= n)
      throw py::value_error("draft token out of range");
  }
  spec::Rng rng(seed);
  std::vector<float> scratch(n);
  auto p_row = [&](int i) { return p_rows.data() + static_cast<size_t>(i) * n; };
  const spec::Accept a = spec::accept_sampling(p_row, q_rows ? q_rows->data() : nullptr,
                                               draft.data(), k, n, rng, scratch.data());
  return py::make_tuple(a.n_accept, a.next);
}

void bind_spec(py::module_& m) {
  py::module_ s = m.def_submodule("spec", "Pure speculative-decoding math (for tests).");
  s.def("process_logits", &process_logits, py::arg("logits"), py::arg("temperature") = 1.0f,
        py::arg("top_k") = 0, py::arg("top_p") = 1.0f);
  s.def("argmax",
        [](const FloatArray& x) { return spec::argmax(x.data(), static_cast<int>(x.size())); });
  s.def(
      "residual",
      [](const FloatArray& p, const std::optional<FloatArray>& q, int draft) {
        const int n = static_cast<int>(p.size());
        if (q && q->size() != n) throw py::value_error("p and q differ in size");
        if (!q && (draft < 0 || draft >= n))
          throw py::value_error("one-hot q needs 0 <= draft < n");
        FloatArray out(n);
        const bool ok =
            spec::residual(p.data(), q ? q->data() : nullptr, draft, n, out.mutable_data());
        return py::make_tuple(ok, out);
      },
      py::arg("p"), py::arg("q") = py::none(), py::arg("draft") = -1);
  s.def(
      "sample",
      [](const FloatArray& probs, uint64_t seed) {
        spec::Rng rng(seed);
        return spec::sample(probs.data(), static_cast<int>(probs.size()), rng);
      },
      py::arg("probs"), py::arg("seed"));
  s.def(
      "accept_greedy",
      [](const FloatArray& logits, const IntArray& draft) {
        const int k = static_cast<int>(draft.size());
        if (logits.ndim() != 2) throw py::value_error("logits must be 2-D (k+1, vocab)");
        check_rows(logits, k + 1, logits.shape(1), "logits");
        const spec::Accept a =
            spec::accept_greedy(logits.data(), static_cast<int>(logits.shape(1)), draft.data(), k);
        return py::make_tuple(a.n_accept, a.next);
      },
      py::arg("logits"), py::arg("draft"));
  s.def(
      "accept_greedy_tree",
      [](const FloatArray& logits, const IntArray& draft, const IntArray& parent) {
        const int k = static_cast<int>(draft.size());
        if (logits.ndim() != 2) throw py::value_error("logits must be 2-D (k+1, vocab)");
        check_rows(logits, k + 1, logits.shape(1), "logits");
        if (parent.size() != k) throw py::value_error("need one parent per draft");
        for (int i = 0; i < k; ++i) {
          if (parent.data()[i] < 0 || parent.data()[i] > i) {
            throw py::value_error("parent[" + std::to_string(i) +
                                  "] = " + std::to_string(parent.data()[i]) + " is not in [0, " +
                                  std::to_string(i) + "]");
          }
        }
        std::vector<int32_t> path(k);  // int32 [k]
        const spec::Accept a =
            spec::accept_greedy_tree(logits.data(), static_cast<int>(logits.shape(1)), draft.data(),
                                     parent.data(), k, path.data());
        path.resize(a.n_accept);
        return py::make_tuple(a.n_accept, a.next, path);
      },
      py::arg("logits"), py::arg("draft"), py::arg("parent"));
  s.def("accept_sampling", &accept_sampling, py::arg("p_rows"), py::arg("q_rows"), py::arg("draft"),
        py::arg("seed"));
  s.def(
      "uniform",
      [](uint64_t seed, int count) {
        spec::Rng rng(seed);
        py::array_t<double> out(count);
        for (int i = 0; i < count; ++i) out.mutable_data()[i] = rng.uniform();
        return out;
      },
      py::arg("seed"), py::arg("count"));
  s.def(
      "choose_draft_length",
      [](const std::vector<double>& accept, const std::vector<double>& cost, double draft_cost) {
        const int k_max = static_cast<int>(accept.size());
        if (static_cast<int>(cost.size()) != k_max + 1) {
          throw py::value_error("cost must hold c(1..k_max+1): " + std::to_string(k_max + 1) +
                                " values, got " + std::to_string(cost.size()));
        }
        std::vector<double> c(1, 0.0);  // c[0] unused
        c.insert(c.end(), cost.begin(), cost.end());
        return choose_draft_length(accept.data(), c.data(), k_max, draft_cost);
      },
      py::arg("accept"), py::arg("cost"), py::arg("draft_cost") = 0.0,
      "argmax_k E(k)/C(k): accept[i] = P(draft i+1 accepted | earlier ones were), cost[w-1] = "
      "verify cost of width w relative to width 1.");
  s.def(
      "lookup",
      [](const IntArray& seq, int n_min, int n_max, int k) {
        if (n_min < 1 || n_max < n_min || k < 0)
          throw py::value_error("need 1 <= n_min <= n_max, k >= 0");
        const lookup::Match m =
            lookup::find_longest(seq.data(), static_cast<int>(seq.size()), n_min, n_max);
        std::vector<int32_t> out(m.end >= 0 ? k : 0);
        if (m.end >= 0)
          lookup::copy_continuation(seq.data(), static_cast<int>(seq.size()), m.end, k, out.data());
        return py::make_tuple(m.len, out);
      },
      py::arg("seq"), py::arg("n_min"), py::arg("n_max"), py::arg("k"),
      "Prompt lookup: (match length, k proposed tokens), (0, []) without a match.");
  s.def(
      "ngram_key",
      [](const IntArray& toks) { return ngram_key(toks.data(), static_cast<int>(toks.size())); },
      py::arg("tokens"), "Key of an n-gram table context (ngram_table.h).");
  s.def(
      "table_draft",
      [](const NgramTable& table, int vocab, const IntArray& seq, int k) {
        if (k < 0 || k > NgramIndex::kMaxDraft) throw py::value_error("need 0 <= k <= 16");
        const NgramIndex index(table, vocab);
        std::vector<int32_t> out(k);
        int order = 0;
        out.resize(index.draft(seq.data(), static_cast<int>(seq.size()), k, out.data(), &order));
        return py::make_tuple(order, out);
      },
      py::arg("table"), py::arg("vocab"), py::arg("seq"), py::arg("k"),
      "An n-gram table's draft after seq: (context length of its first token, tokens).");
  py::class_<DraftPolicy>(s, "DraftPolicy", "The cost-aware draft-length policy (draft_policy.h).")
      .def(py::init([](int k_limit) {
             if (k_limit < 1) throw py::value_error("k_limit must be >= 1");
             auto p = std::make_unique<DraftPolicy>();
             p->reset_costs(k_limit);
             return p;
           }),
           py::arg("k_limit"))
      .def("reset_acceptance", &DraftPolicy::reset_acceptance, py::arg("k_max"),
           py::arg("prior_accept"), py::arg("use_times"))
      .def("set_prior_draft_cost", &DraftPolicy::set_prior_draft_cost, py::arg("d"))
      .def(
          "observe",
          [](DraftPolicy& p, int cls, int n_draft, int n_accept, double t_verify, double t_draft,
             int width) {
            if (cls < -1 || cls >= kDraftClasses || n_draft < 0 || n_accept < 0 ||
                n_accept > n_draft || (width != 0 && width < n_draft + 1))
              throw py::value_error(
                  "need -1 <= cls < kDraftClasses, 0 <= n_accept <= n_draft and width 0 (a "
                  "chain) or >= n_draft + 1");
            p.observe(cls, n_draft, n_accept, width == 0 ? n_draft + 1 : width, t_verify, t_draft);
          },
          py::arg("cls"), py::arg("n_draft"), py::arg("n_accept"), py::arg("t_verify"),
          py::arg("t_draft"), py::arg("width") = 0)
      .def(
          "choose",
          [](DraftPolicy& p, int cls) {
            if (cls < 0 || cls >= kDraftClasses)
              throw py::value_error("need 0 <= cls < kDraftClasses");
            return p.choose(cls);
          },
          py::arg("cls"));
  s.attr("DRAFT_CLASSES") = kDraftClasses;
}

// out [nr, D] = attend_rows(q [nr, D], k / v [n, D]); generic: the portable kernel. Row r sees
// keys j < n0 + r, or j < counts[r] (nondecreasing) when given. With tail (rows that all see n0
// keys): keys j >= n_direct are the rows tail[j - n_direct] (ops::KeyRows).
FloatArray attend_rows(const FloatArray& q, const FloatArray& k, const FloatArray& v, int n0,
                       float scale, bool generic, const std::optional<IntArray>& tail, int n_direct,
                       const std::optional<IntArray>& counts) {
  if (q.ndim() != 2 || k.ndim() != 2 || v.ndim() != 2 || k.shape(1) != q.shape(1) ||
      v.shape(0) != k.shape(0) || v.shape(1) != q.shape(1)) {
    throw py::value_error("need q [nr, D] and k, v [n, D]");
  }
  const int nr = static_cast<int>(q.shape(0)), dim = static_cast<int>(q.shape(1));
  ops::KeyRows rows;
  if (counts && (counts->ndim() != 1 || counts->shape(0) != nr || nr < 1 ||
                 counts->data()[0] != n0 || !std::is_sorted(counts->data(), counts->data() + nr))) {
    throw py::value_error("counts must be [nr], start at n0 and never decrease");
  }
  std::vector<int32_t> n(std::max(nr, 1), n0);  // [nr]: keys each row sees
  for (int r = 0; r < nr; ++r) n[r] = counts ? counts->data()[r] : n0 + r;
  int64_t last_row = n[n.size() - 1] - 1;  // the highest row of k a key maps to
  if (tail) {
    const int n_tail = n0 - n_direct;
    if (n[0] != n[n.size() - 1] || n_direct < 0 || tail->ndim() != 1 || tail->shape(0) != n_tail) {
      throw py::value_error("a tail needs rows at one position and n0 - n_direct entries, got " +
                            std::to_string(tail->size()) + " for n0 " + std::to_string(n0) +
                            ", n_direct " + std::to_string(n_direct));
    }
    rows = {n_direct, tail->data()};
    last_row = n_direct - 1;
    for (int i = 0; i < n_tail; ++i) {
      if (tail->data()[i] < 0) throw py::value_error("tail rows must be >= 0");
      last_row = std::max<int64_t>(last_row, tail->data()[i]);
    }
  }
  if (nr < 1 || nr > ops::kMaxVectors || n0 < 1 || last_row >= k.shape(0) || dim < 1) {
    throw py::value_error("need 1 <= nr <= " + std::to_string(ops::kMaxVectors) +
                          ", n0 >= 1, every key's row < n and D >= 1");
  }
  const int64_t stride = (n[nr - 1] + 7) / 8 * 8;
  std::vector<float> scores(static_cast<size_t>(nr) * stride);  // [nr, stride]
  FloatArray out({nr, dim});
  auto run = generic ? ops::attend_rows_generic : ops::attend_rows;
  run(q.data(), nr, n.data(), k.data(), v.data(), dim, scale, scores.data(), stride,
      out.mutable_data(), dim, rows);
  return out;
}

// z [rows, n] = y + blocksum(x [rows, nb * block_size]) @ m (float16 bits [nb, n]).
FloatArray block_offset(const FloatArray& y, const FloatArray& x,
                        const py::array_t<uint16_t, py::array::c_style | py::array::forcecast>& m,
                        int block_size, bool generic) {
  if (y.ndim() != 2 || x.ndim() != 2 || m.ndim() != 2 || block_size < 1 ||
      x.shape(0) != y.shape(0) || m.shape(1) != y.shape(1) ||
      m.shape(0) * block_size != x.shape(1)) {
    throw py::value_error("need y [rows, n], x [rows, nb * block_size], m [nb, n]");
  }
  const int64_t rows = y.shape(0), n = y.shape(1), nb = m.shape(0);
  std::vector<float> sums(static_cast<size_t>(rows * nb));  // [rows, nb]
  ops::block_sums(x.data(), rows, nb, block_size, sums.data());
  FloatArray z({rows, n});
  auto run = generic ? ops::block_offset_cols_generic : ops::block_offset_cols;
  run(sums.data(), rows, nb, m.data(), n, 0, n, y.data(), z.mutable_data());
  return z;
}

using QMatMulFn = void (*)(const ops::QWeights&, const ops::QRows&, int64_t, int64_t, int64_t,
                           float*, int64_t, int64_t);

// The kernel named: "auto" (what the op runs on this CPU), "generic", "avx2", "avx512vnni"
// (ValueError when this CPU lacks it).
QMatMulFn qmatmul_kernel(const std::string& name) {
  if (name == "auto") return ops::qmatmul_tiles;
  if (name == "generic") return ops::qmatmul_tiles_generic;
#if EDGESPEC_HAVE_AVX2
  if (name == "avx2" && ops::cpu_has_avx2_f16c()) return ops::qmatmul_avx2;
  if (name == "avx512vnni" && ops::cpu_has_avx512vnni()) return ops::qmatmul_avx512vnni;
#endif
  throw py::value_error(
      "kernel must be auto, generic, or one this CPU runs (avx2, avx512vnni), "
      "got " +
      name);
}

// y [rows, n] = x [rows, K] @ W^T for packed 4- or 8-bit weights (qmatmul.h): q uint8 [tiles, nb,
// 64 * bits], scale float [tiles, nb, 16], m float16 bits [tiles, nb, 16].
FloatArray qmatmul(const FloatArray& x,
                   const py::array_t<uint8_t, py::array::c_style | py::array::forcecast>& q,
                   const FloatArray& scale,
                   const py::array_t<uint16_t, py::array::c_style | py::array::forcecast>& m,
                   int64_t n, int bits, int zero_point, const std::string& kernel) {
  const int64_t tiles = (n + ops::kQTile - 1) / ops::kQTile;
  if (x.ndim() != 2 || x.shape(1) % ops::kQBlock != 0 || n < 1 || q.ndim() != 3 ||
      scale.ndim() != 3 || m.ndim() != 3) {
    throw py::value_error("need x [rows, K] with K a multiple of 32, n >= 1 and 3-d q, scale, m");
  }
  const int64_t rows = x.shape(0), nb = x.shape(1) / ops::kQBlock;
  if (bits != 4 && bits != 8)
    throw py::value_error("bits must be 4 or 8, got " + std::to_string(bits));
  const bool ok = q.shape(0) == tiles && q.shape(1) == nb && q.shape(2) == 64 * bits &&
                  scale.shape(0) == tiles && scale.shape(1) == nb &&
                  scale.shape(2) == ops::kQTile && m.shape(0) == tiles && m.shape(1) == nb &&
                  m.shape(2) == ops::kQTile;
  if (!ok) throw py::value_error("need q [tiles, nb, 64 * bits], scale and m [tiles, nb, 16]");
  if (zero_point < 0 || zero_point >= (1 << bits)) {
    throw py::value_error("zero_point must be in [0, 2^bits), got " + std::to_string(zero_point));
  }
  std::vector<int8_t> qx(static_cast<size_t>(rows * nb * ops::kQBlock));  // [rows, K]
  std::vector<float> d(static_cast<size_t>(rows * nb)), xs(d.size());     // [rows, nb]
  std::vector<int32_t> qs(d.size());                                      // [rows, nb]
  const ops::QRows a{qx.data(), d.data(), xs.data(), qs.data()};
  ops::qmatmul_quantize_rows(x.data(), rows, nb, a);
  ops::QWeights w{q.data(), scale.data(), m.data(), nb, tiles, bits, zero_point};
  FloatArray y({rows, n});
  qmatmul_kernel(kernel)(w, a, rows, 0, tiles, y.mutable_data(), n, n);
  return y;
}

using FMatMulFn = void (*)(const ops::FWeights&, const float*, int64_t, int64_t, int64_t, int64_t,
                           float*, int64_t, int64_t);

// The kernel named: "auto" (what the op runs on this CPU), "generic", "avx2", "avx512"
// (ValueError when this CPU lacks it).
FMatMulFn fmatmul_kernel(const std::string& name) {
  if (name == "auto") return ops::fmatmul_tiles;
  if (name == "generic") return ops::fmatmul_tiles_generic;
#if EDGESPEC_HAVE_AVX2
  if (name == "avx2" && ops::cpu_has_avx2()) return ops::fmatmul_avx2;
  if (name == "avx512" && ops::cpu_has_avx512f()) return ops::fmatmul_avx512;
#endif
  throw py::value_error("kernel must be auto, generic, or one this CPU runs (avx2, avx512), got " +
                        name);
}

// y [rows, n] = x [rows, K] @ W for packed float32 weights w [tiles, K, 16] (fmatmul.h).
FloatArray fmatmul(const FloatArray& x, const FloatArray& w, int64_t n, const std::string& kernel) {
  if (x.ndim() != 2 || n < 1 || w.ndim() != 3) {
    throw py::value_error("need x [rows, K], n >= 1 and w [tiles, K, 16]");
  }
  const int64_t rows = x.shape(0), k = x.shape(1), tiles = (n + ops::kFTile - 1) / ops::kFTile;
  if (k < 1 || w.shape(0) != tiles || w.shape(1) != k || w.shape(2) != ops::kFTile) {
    throw py::value_error("need w [ceil(n / 16), K, 16] = [" + std::to_string(tiles) + ", " +
                          std::to_string(k) + ", 16] for K >= 1");
  }
  const FMatMulFn run = fmatmul_kernel(kernel);
  FloatArray y({rows, n});
  run(ops::FWeights{w.data(), k, tiles}, x.data(), k, rows, 0, tiles, y.mutable_data(), n, n);
  return y;
}

void bind_ops(py::module_& m) {
  py::module_ o = m.def_submodule("ops", "edgespec's custom-op kernels (for tests).");
  o.def("attend_rows", &attend_rows, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("n0"),
        py::arg("scale"), py::arg("generic") = false, py::arg("tail") = py::none(),
        py::arg("n_direct") = 0, py::arg("counts") = py::none());
  o.def("exp_nonpositive", [](float x) { return ops::exp_nonpositive(x); }, py::arg("x"));
  o.def("block_offset", &block_offset, py::arg("y"), py::arg("x"), py::arg("m"),
        py::arg("block_size"), py::arg("generic") = false);
  o.def("qmatmul", &qmatmul, py::arg("x"), py::arg("q"), py::arg("scale"), py::arg("m"),
        py::arg("n"), py::arg("bits") = 4, py::arg("zero_point") = 0, py::arg("kernel") = "auto");
  o.def(
      "qmatmul_kernel", [] { return std::string(ops::qmatmul_kernel_name()); },
      "Which QMatMul kernel this CPU runs: avx512vnni, avx2 or generic.");
  o.def("fmatmul", &fmatmul, py::arg("x"), py::arg("w"), py::arg("n"), py::arg("kernel") = "auto");
  o.def(
      "fmatmul_kernel", [] { return std::string(ops::fmatmul_kernel_name()); },
      "Which FMatMul kernel this CPU runs: avx512, avx2 or generic.");
  o.attr("MAX_ROWS") = ops::kMaxRows;
  o.attr("MAX_VECTORS") = ops::kMaxVectors;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "edgespec native core: ONNX Runtime sessions and the speculative decoding loop.";
  m.def("load_runtime", &load_runtime, py::arg("path") = "",
        "dlopen libonnxruntime (\"\" = system loader) once per process.");
  m.def("runtime_version", &runtime_version, "Version of the loaded ORT (\"\" before loading).");
  m.def("available_providers", &available_providers, "Execution providers of the loaded ORT.");
  bind_specs(m);
  bind_results(m);
  bind_engine(m);
  bind_spec(m);
  bind_ops(m);
}
