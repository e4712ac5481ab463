package org.ketaminefhir.peer;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.parser.IParser;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ValidationOptions;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.reflect.Constructor;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.PrePopulatedValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r5.context.IWorkerContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;

/**
 * HAPI FHIR's instance validator under the benchmark protocol of bench/protocol.py (bench only; compiled by
 * bench/hapi.py with javac against the classes and classpath of the tests' harness, tests/peers/hapi/validator).
 *
 * <pre>java -Xmx1g -cp BENCH:HARNESS:CP org.ketaminefhir.peer.BenchMain MANIFEST.json  -> one JSON document</pre>
 *
 * The validator is built exactly as the harness's ValidateMain builds it (same chain, same options); the
 * harness's private helpers (loading our IG directory, the verdict with unknown code systems downgraded) are
 * reached by reflection so that verdicts stay the harness's. The timed call is validateWithResult on the
 * file's text in memory, as the other contenders are timed: each file on its own and the valid singles in
 * rotation, in alternated rounds (rules 2 and 3 of bench/protocol.py), then each Bundle in pairs with its singles
 * (rule 4). Besides the protocol, it measures HAPI's own
 * per-call constant: ValidatorWrapper builds a new InstanceValidator for every validateWithResult call
 * (whose constructor re-reads an OID table), so buildInstanceValidator is timed on its own, warm.
 */
public final class BenchMain {
	private static final String WRAPPER = "org.hl7.fhir.common.hapi.validation.validator.ValidatorWrapper";

	private BenchMain() {
	}

	public static void main(String[] args) {
		PrintStream jsonOut = new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
		System.setOut(System.err);
		int code = 0;
		try {
			jsonOut.print(new ObjectMapper().writeValueAsString(run(Path.of(args[0]))));
		} catch (Throwable t) {
			t.printStackTrace(System.err);
			code = 4;
		}
		jsonOut.flush();
		System.exit(code); // the chain's executor thread is not a daemon
	}

	private static Method harness(String name, Class<?>... types) throws ReflectiveOperationException {
		Method m = ValidateMain.class.getDeclaredMethod(name, types);
		m.setAccessible(true);
		return m;
	}

	@SuppressWarnings("unchecked")
	private static Map<String, Object> run(Path manifestPath) throws Exception {
		Map<String, Object> manifest = new ObjectMapper().readValue(manifestPath.toFile(), Map.class);
		Map<String, Object> settings = (Map<String, Object>) manifest.get("protocol");
		FhirContext ctx = FhirContext.forR4();
		PrePopulatedValidationSupport ours = new PrePopulatedValidationSupport(ctx);
		IParser parser = ctx.newJsonParser();
		harness("loadDirectory", IParser.class, PrePopulatedValidationSupport.class, Path.class, List.class, List.class)
				.invoke(null, parser, ours, Path.of((String) manifest.get("ig_dir")), new ArrayList<String>(),
						new ArrayList<IBaseResource>());
		ValidationSupportChain chain = new ValidationSupportChain(ours, new DefaultProfileValidationSupport(ctx),
				new CommonCodeSystemsTerminologyService(ctx), new InMemoryTerminologyServerValidationSupport(ctx),
				new SnapshotGeneratingValidationSupport(ctx));
		FhirInstanceValidator module = new FhirInstanceValidator(chain);
		module.setAssumeValidRestReferences(true); // as the harness
		Method enumerated = harness("isEnumerated", ValidationSupportChain.class, String.class);
		Field enumeratedField = ValidateMain.class.getDeclaredField("ENUMERATED");
		enumeratedField.setAccessible(true);
		enumeratedField.set(null, (Predicate<String>) url -> {
			try {
				return (Boolean) enumerated.invoke(null, chain, url);
			} catch (ReflectiveOperationException e) {
				throw new IllegalStateException(e);
			}
		});
		FhirValidator validator = ctx.newValidator();
		validator.registerValidatorModule(module);
		ValidationOptions options = new ValidationOptions();

		List<Map<String, Object>> files = (List<Map<String, Object>>) manifest.get("files");
		List<String> texts = new ArrayList<>();
		for (Map<String, Object> f : files) {
			texts.add(Files.readString(Path.of((String) f.get("path")), StandardCharsets.UTF_8));
		}
		List<Integer> warm = (List<Integer>) manifest.get("warmup");
		long loadedNs = System.nanoTime(); // CLOCK_MONOTONIC on Linux, as the parent's time.monotonic_ns()
		call(validator, options, texts.get(warm.get(0)));
		long firstNs = System.nanoTime();
		List<String> warmTexts = new ArrayList<>();
		for (int i : warm) {
			warmTexts.add(texts.get(i));
		}
		List<Double> passes = warmUp(validator, options, warmTexts, settings);

		long minNs = (long) (num(settings, "per_file_s") * 1e9);
		int minCalls = (int) num(settings, "min_calls");
		List<Integer> order = (List<Integer>) manifest.get("rotation");
		Measured measured = measure(validator, options, texts, order, settings);
		List<Map<String, Object>> pairs = pair(validator, options, texts,
				(List<Map<String, Object>>) manifest.get("pairs"), measured.files, settings);
		Method validateFile = harness("validateFile", FhirValidator.class, ValidationOptions.class, Path.class,
				boolean.class);
		List<Map<String, Object>> results = new ArrayList<>();
		for (int i = 0; i < texts.size(); i++) {
			Map<String, Object> r = measured.files.get(i).toJson();
			List<String> errors = errors((List<?>) validateFile.invoke(null, validator, options,
					Path.of((String) files.get(i).get("path")), false));
			r.put("errors", !errors.isEmpty());
			r.put("messages", errors.subList(0, Math.min(5, errors.size())));
			results.add(r);
		}
		// each file's verdict in rotation is the harness's (validateFile, in results): the timed call is
		// validateWithResult, whose issues only the harness's own code turns into a verdict
		List<Map<String, Object>> rotated = new ArrayList<>();
		for (int k = 0; k < order.size(); k++) {
			Map<String, Object> r = measured.turns.get(k).toJson();
			Map<String, Object> verdict = results.get(order.get(k));
			r.put("errors", verdict.get("errors"));
			r.put("messages", verdict.get("messages"));
			rotated.add(r);
		}
		Map<String, Object> rotation = new LinkedHashMap<>();
		rotation.put("order", order);
		rotation.put("rounds", measured.passes);
		rotation.put("timed_rounds", measured.rounds);
		rotation.put("seconds", measured.rotationNs / 1e9);
		rotation.put("results", rotated);

		Map<String, Object> out = new LinkedHashMap<>();
		out.put("contender", "HAPI FHIR " + ca.uhn.fhir.util.VersionUtil.getVersion() + " (instance validator)");
		out.put("loaded_ns", Long.toString(loadedNs));
		out.put("first_result_ns", Long.toString(firstNs));
		out.put("warmup_pass_ms", passes);
		out.put("per_call_constant", constant(module.getWorkerContext(), minCalls, minNs));
		out.put("jvm", jvm());
		out.put("peak_rss_kib", vmhwmKib());
		out.put("results", results);
		out.put("rotation", rotation);
		out.put("pairs", pairs);
		return out;
	}

	private static double num(Map<String, Object> settings, String key) {
		return ((Number) settings.get(key)).doubleValue();
	}

	private static void call(FhirValidator validator, ValidationOptions options, String text) {
		try {
			validator.validateWithResult(text, options);
		} catch (RuntimeException e) {
			// malformed JSON: HAPI throws instead of reporting an issue; the verdict comes from the harness
		}
	}

	private static double median(List<Double> values) {
		double[] ordered = values.stream().mapToDouble(d -> d).sorted().toArray();
		int mid = ordered.length / 2;
		return ordered.length % 2 == 1 ? ordered[mid] : (ordered[mid - 1] + ordered[mid]) / 2;
	}

	/** bench/protocol.py is_steady: the last window's median within tolerance of the window's before it. */
	private static boolean isSteady(List<Double> passes, int window, double tolerance) {
		int n = passes.size();
		if (window < 1 || n < 2 * window) {
			return false;
		}
		double last = median(passes.subList(n - window, n));
		double before = median(passes.subList(n - 2 * window, n - window));
		return before > 0 && Math.abs(last - before) / before < tolerance;
	}

	/** Rule 1 of bench/protocol.py, as bench/child.py warm_up. */
	private static List<Double> warmUp(FhirValidator validator, ValidationOptions options, List<String> texts,
			Map<String, Object> settings) {
		int window = (int) num(settings, "window");
		double tolerance = num(settings, "tolerance");
		long minPassNs = (long) (num(settings, "min_pass_s") * 1e9);
		long maxNs = (long) (num(settings, "max_s") * 1e9);
		long began = System.nanoTime();
		List<Double> passes = new ArrayList<>();
		while (!isSteady(passes, window, tolerance) && System.nanoTime() - began < maxNs) {
			long t0 = System.nanoTime();
			int rounds = 0;
			while (rounds == 0 || System.nanoTime() - t0 < minPassNs) {
				for (String text : texts) {
					call(validator, options, text);
				}
				rounds++;
			}
			passes.add((System.nanoTime() - t0) / (double) rounds / 1e6);
		}
		return passes;
	}

	/** One file's calls in one row over the rounds (bench/child.py _Series). */
	private static final class Series {
		int calls;
		long spentNs;
		final List<Double> medians = new ArrayList<>();
		final List<Double> p95s = new ArrayList<>();

		void close(List<Long> times) {
			if (!times.isEmpty()) {
				Map<String, Object> r = summary(times);
				medians.add((Double) r.get("median_ns"));
				p95s.add((Double) r.get("p95_ns"));
			}
		}

		/** The file's median (p95): the median of its rounds' medians (p95s). */
		Map<String, Object> toJson() {
			Map<String, Object> r = new LinkedHashMap<>();
			r.put("calls", calls);
			r.put("median_ns", median(medians));
			r.put("p95_ns", median(p95s));
			r.put("round_medians_ns", medians);
			return r;
		}

		void call(FhirValidator validator, ValidationOptions options, String text, List<Long> times) {
			long t0 = System.nanoTime();
			BenchMain.call(validator, options, text);
			long spent = System.nanoTime() - t0;
			times.add(spent);
			calls++;
			spentNs += spent;
		}
	}

	private record Measured(List<Series> files, List<Series> turns, int passes, int rounds, long rotationNs) {
	}

	/**
	 * Rules 2 and 3 of bench/protocol.py in {@code rounds} rounds, as bench/child.py measure: rounds 1, 3, ... the
	 * files in order then the rotation; rounds 2, 4, ... the rotation then the files in reverse order.
	 */
	private static Measured measure(FhirValidator validator, ValidationOptions options, List<String> texts,
			List<Integer> order, Map<String, Object> settings) {
		int rounds = Math.max(1, (int) num(settings, "rounds"));
		int minCalls = (int) Math.ceil(num(settings, "min_calls") / rounds);
		long shareNs = (long) (num(settings, "per_file_s") * 1e9 / rounds);
		long capNs = (long) (num(settings, "slow_file_s") * 1e9);
		List<Series> files = new ArrayList<>();
		for (int i = 0; i < texts.size(); i++) {
			files.add(new Series());
		}
		List<Series> turns = new ArrayList<>();
		for (int k = 0; k < order.size(); k++) {
			turns.add(new Series());
		}
		int passes = 0;
		long rotationNs = 0;
		for (int r = 0; r < rounds; r++) {
			boolean forward = r % 2 == 0;
			if (!forward) {
				long t0 = System.nanoTime();
				passes += rotateRound(validator, options, texts, order, turns, minCalls, shareNs * order.size(),
						capNs * order.size());
				rotationNs += System.nanoTime() - t0;
			}
			for (int j = 0; j < texts.size(); j++) {
				int i = forward ? j : texts.size() - 1 - j;
				repeat(validator, options, texts.get(i), files.get(i), minCalls, shareNs, capNs);
			}
			if (forward) {
				long t0 = System.nanoTime();
				passes += rotateRound(validator, options, texts, order, turns, minCalls, shareNs * order.size(),
						capNs * order.size());
				rotationNs += System.nanoTime() - t0;
			}
		}
		return new Measured(files, turns, passes, rounds, rotationNs);
	}

	/** One round of one file repeated (bench/child.py _repeat). */
	private static void repeat(FhirValidator validator, ValidationOptions options, String text, Series s,
			int minCalls, long shareNs, long capNs) {
		if (s.calls > 0 && s.spentNs > capNs) {
			return;
		}
		List<Long> times = new ArrayList<>();
		long start = System.nanoTime();
		while (times.size() < minCalls || System.nanoTime() - start < shareNs) {
			if (s.calls > 0 && s.spentNs > capNs) {
				break;
			}
			s.call(validator, options, text, times);
		}
		s.close(times);
	}

	/** One round of the rotation (bench/child.py _rotate); returns the passes made. */
	private static int rotateRound(FhirValidator validator, ValidationOptions options, List<String> texts,
			List<Integer> order, List<Series> turns, int minPasses, long shareNs, long capNs) {
		if (order.isEmpty() || (turns.get(0).calls > 0 && spent(turns) > capNs)) {
			return 0;
		}
		List<List<Long>> times = new ArrayList<>();
		for (int k = 0; k < order.size(); k++) {
			times.add(new ArrayList<>());
		}
		long start = System.nanoTime();
		int passes = 0;
		while (passes < minPasses || System.nanoTime() - start < shareNs) {
			if (passes > 0 && spent(turns) > capNs) {
				break;
			}
			for (int k = 0; k < order.size(); k++) {
				turns.get(k).call(validator, options, texts.get(order.get(k)), times.get(k));
			}
			passes++;
		}
		for (int k = 0; k < order.size(); k++) {
			turns.get(k).close(times.get(k));
		}
		return passes;
	}

	/**
	 * Rule 4 of bench/protocol.py, as bench/child.py pair: per Bundle, pairs of one call of the Bundle and one pass
	 * over its singles, taking turns at going first, each side timed as a whole, until min_pairs and pair_s, at most
	 * max_pairs, none more once they have taken pairs_cap_s; none when min_pairs pairs would take longer than that
	 * by the files' medians (rule 2). The parent makes the ratios.
	 */
	@SuppressWarnings("unchecked")
	private static List<Map<String, Object>> pair(FhirValidator validator, ValidationOptions options,
			List<String> texts, List<Map<String, Object>> pairs, List<Series> files, Map<String, Object> settings) {
		long shareNs = (long) (num(settings, "pair_s") * 1e9);
		long capNs = (long) (num(settings, "pairs_cap_s") * 1e9);
		int least = (int) num(settings, "min_pairs");
		int most = (int) num(settings, "max_pairs");
		List<Map<String, Object>> out = new ArrayList<>();
		for (Map<String, Object> spec : pairs == null ? List.<Map<String, Object>>of() : pairs) {
			int bundle = ((Number) spec.get("bundle")).intValue();
			List<Integer> singles = (List<Integer>) spec.get("singles");
			double guess = (Double) files.get(bundle).toJson().get("median_ns");
			for (int i : singles) {
				guess += (Double) files.get(i).toJson().get("median_ns");
			}
			List<Long> bundleNs = new ArrayList<>();
			List<Long> singlesNs = new ArrayList<>();
			long start = System.nanoTime();
			long spent = 0;
			while (guess * least <= capNs && bundleNs.size() < most && spent <= capNs
					&& (bundleNs.size() < least || System.nanoTime() - start < shareNs)) {
				boolean[] turns = bundleNs.size() % 2 == 0 ? new boolean[] {true, false} : new boolean[] {false, true};
				for (boolean isBundle : turns) {
					long t0 = System.nanoTime();
					if (isBundle) {
						call(validator, options, texts.get(bundle));
					} else {
						for (int i : singles) {
							call(validator, options, texts.get(i));
						}
					}
					long took = System.nanoTime() - t0;
					(isBundle ? bundleNs : singlesNs).add(took);
					spent += took;
				}
			}
			Map<String, Object> r = new LinkedHashMap<>();
			r.put("bundle", bundle);
			r.put("bundle_ns", bundleNs);
			r.put("singles_ns", singlesNs);
			out.add(r);
		}
		return out;
	}

	private static long spent(List<Series> turns) {
		long total = 0;
		for (Series t : turns) {
			total += t.spentNs;
		}
		return total;
	}

	private static Map<String, Object> summary(List<Long> times) {
		long[] ordered = times.stream().mapToLong(t -> t).sorted().toArray();
		Map<String, Object> r = new LinkedHashMap<>();
		r.put("calls", ordered.length);
		r.put("median_ns", quantile(ordered, 0.5));
		r.put("p95_ns", quantile(ordered, 0.95));
		return r;
	}

	/** As bench/stats.py quantile (linear interpolation). */
	private static double quantile(long[] ordered, double q) {
		double pos = q * (ordered.length - 1);
		int low = (int) pos;
		int high = Math.min(low + 1, ordered.length - 1);
		return ordered[low] + (ordered[high] - ordered[low]) * (pos - low);
	}

	private static List<String> errors(List<?> issues) throws ReflectiveOperationException {
		List<String> out = new ArrayList<>();
		for (Object issue : issues) {
			String severity = (String) field(issue, "severity");
			if ("error".equals(severity) || "fatal".equals(severity)) {
				out.add(field(issue, "location") + ": " + field(issue, "message"));
			}
		}
		return out;
	}

	private static Object field(Object o, String name) throws ReflectiveOperationException {
		Field f = o.getClass().getDeclaredField(name);
		f.setAccessible(true);
		return f.get(o);
	}

	/** ValidatorWrapper.buildInstanceValidator, which validateWithResult runs once per call, timed alone. */
	private static Map<String, Object> constant(IWorkerContext context, int minCalls, long minNs) {
		Map<String, Object> out = new LinkedHashMap<>();
		out.put("what", "ValidatorWrapper.buildInstanceValidator (a new InstanceValidator per validateWithResult "
				+ "call), timed alone after the warm-up");
		try {
			Class<?> wrapperClass = Class.forName(WRAPPER);
			Constructor<?> ctor = wrapperClass.getDeclaredConstructor();
			ctor.setAccessible(true);
			Object wrapper = ctor.newInstance();
			Method build = wrapperClass.getDeclaredMethod("buildInstanceValidator", IWorkerContext.class);
			build.setAccessible(true);
			for (int i = 0; i < 20; i++) {
				build.invoke(wrapper, context); // its own warm-up
			}
			List<Long> times = new ArrayList<>();
			long start = System.nanoTime();
			while (times.size() < Math.max(minCalls, 20) || System.nanoTime() - start < minNs) {
				long t0 = System.nanoTime();
				build.invoke(wrapper, context);
				times.add(System.nanoTime() - t0);
			}
			out.putAll(summary(times));
			out.put("status", "ran");
		} catch (ReflectiveOperationException | RuntimeException e) {
			out.put("status", "not run: " + e);
		}
		return out;
	}

	private static Map<String, Object> jvm() {
		Map<String, Object> out = new LinkedHashMap<>();
		List<String> gcs = new ArrayList<>();
		for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
			gcs.add(gc.getName());
		}
		out.put("gc", gcs);
		out.put("compiler", ManagementFactory.getCompilationMXBean().getName());
		out.put("input_arguments", ManagementFactory.getRuntimeMXBean().getInputArguments());
		out.put("available_processors", Runtime.getRuntime().availableProcessors());
		out.put("max_heap_mb", Runtime.getRuntime().maxMemory() / (1024 * 1024));
		out.put("java_version", System.getProperty("java.version"));
		return out;
	}

	private static Long vmhwmKib() {
		try {
			for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
				if (line.startsWith("VmHWM:")) {
					return Long.parseLong(line.split("\\s+")[1]);
				}
			}
		} catch (java.io.IOException | RuntimeException e) {
			// not Linux: no peak RSS
		}
		return null;
	}
}
