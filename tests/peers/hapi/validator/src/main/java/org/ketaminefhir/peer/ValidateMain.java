package org.ketaminefhir.peer;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.parser.IParser;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationOptions;
import ca.uhn.fhir.validation.ValidationResult;
import ca.uhn.hapi.converters.canonical.VersionCanonicalizer;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.PrePopulatedValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import org.hl7.fhir.common.hapi.validation.validator.ProfileKnowledgeWorkerR5;
import org.hl7.fhir.common.hapi.validation.validator.WorkerContextValidationSupportAdapter;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r5.conformance.profile.ProfileUtilities;
import org.hl7.fhir.utilities.npm.NpmPackage;
import org.hl7.fhir.utilities.validation.ValidationMessage;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Offline HAPI FHIR R4 reference validator: the oracle for our tests and benchmarks.
 *
 * <pre>
 * java -cp target/classes:$(cat target/cp.txt) org.ketaminefhir.peer.ValidateMain \
 *     [--ig DIR]... [--package FILE.tgz]... [--profile URL]... [--stdin-list]
 *     [--strict-unknown-code-systems] [--allow-snapshot-problems] [--no-warmup]
 *     [--allow-any-extensions] [--extension-domain URL]... [--display-issues-are-warnings] [--] FILE.json...
 * </pre>
 *
 * Prints exactly one JSON document on stdout (results, timing, harness); every log line goes to stderr.
 * Exit status: 0 when the JSON document was written (whatever the validation outcome), 2 for a usage error,
 * 3 when our conformance resources could not be loaded or a profile's snapshot could not be generated,
 * 4 for anything unexpected.
 */
public final class ValidateMain {

	/** Conformance resource types loaded from --ig / --package. */
	private static final Set<String> CONFORMANCE_TYPES = Set.of("StructureDefinition", "ValueSet", "CodeSystem");

	/*
	 * Unknown code systems (no terminology server offline: SNOMED CT, LOINC, RxNorm...). Since HAPI 8.2 the
	 * severity of these messages follows the binding strength, so a required binding yields errors. Unless
	 * --strict-unknown-code-systems is given we downgrade them to WARNING (and mark them "downgradedFrom").
	 *
	 * Rule 1 (same message ids and fragments as HAPI 8.8.0's ValidationMessageUnknownCodeSystemPostProcessingInterceptor,
	 * which only runs where an interceptor broadcaster fires VALIDATION_COMPLETED, i.e. not in a plain main):
	 *   Terminology_TX_System_Unknown       + "Unknown Code System"
	 *   Terminology_PassThrough_TX_Message  + "CodeSystem is unknown and can't be validated"
	 *   Terminology_PassThrough_TX_Message or Terminology_TX_NoValid_12
	 *                                       + "Unable to expand ValueSet because CodeSystem could not be found"
	 * plus, found by testing 8.8.0: SNOMED CT is not "unknown" but a bundled R4 CodeSystem stub with
	 * content=not-present, which yields
	 *   Terminology_PassThrough_TX_Message  + "Unable to expand ValueSet because CodeSystem has CodeSystem.content=not-present"
	 * Rule 2 (found by testing 8.8.0): a required binding to a ValueSet that includes a whole unknown system also
	 * yields "None of the codings provided are in the value set ..." (Terminology_TX_NoValid_1_CC and friends) at the
	 * same location. A Terminology_TX_NoValid_* error is downgraded only when a rule-1 message sits at the same
	 * location: membership in extensionally defined ValueSets is still checked exactly, and stays an error.
	 */
	private static final String TX_SYSTEM_UNKNOWN = "Terminology_TX_System_Unknown";
	private static final String TX_PASSTHROUGH = "Terminology_PassThrough_TX_Message";
	private static final String TX_NOVALID_12 = "Terminology_TX_NoValid_12";
	private static final String TX_NOVALID_PREFIX = "Terminology_TX_NoValid_";

	/** Validated before the timed files: loads the R4 core definitions, the FHIRPath engine, code/VS checks. */
	private static final String[] WARMUP_RESOURCES = {
		"{\"resourceType\":\"Patient\",\"id\":\"warmup\",\"active\":true,\"name\":[{\"family\":\"Warmup\"}],"
				+ "\"gender\":\"other\",\"birthDate\":\"2000-01-01\"}",
		"{\"resourceType\":\"Observation\",\"id\":\"warmup\",\"status\":\"final\",\"code\":{\"coding\":"
				+ "[{\"system\":\"http://loinc.org\",\"code\":\"8867-4\"}]},\"subject\":{\"reference\":\"Patient/warmup\"},"
				+ "\"effectiveDateTime\":\"2020-01-01T00:00:00Z\",\"valueQuantity\":{\"value\":1,\"unit\":\"mg\","
				+ "\"system\":\"http://unitsofmeasure.org\",\"code\":\"mg\"}}",
	};

	private ValidateMain() {}

	private static final class Options {
		final List<Path> igDirs = new ArrayList<>();
		final List<Path> packages = new ArrayList<>();
		final List<String> profiles = new ArrayList<>();
		final List<String> files = new ArrayList<>();
		boolean stdinList;
		boolean strictUnknownCodeSystems;
		boolean warmup = true;
		boolean allowSnapshotProblems;
		boolean allowAnyExtensions;
		boolean displayIssuesAreWarnings;
		final List<String> extensionDomains = new ArrayList<>();
	}

	public static void main(String[] args) {
		// Keep stdout for our single JSON document: anything the libraries print goes to stderr.
		PrintStream jsonOut = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), false,
				StandardCharsets.UTF_8);
		System.setOut(System.err);
		int code;
		try {
			code = run(args, jsonOut);
		} catch (UsageException e) {
			System.err.println("ValidateMain: " + e.getMessage());
			System.err.println(usage());
			code = 2;
		} catch (SetupException e) {
			System.err.println("ValidateMain: " + e.getMessage());
			if (e.getCause() != null) {
				e.getCause().printStackTrace(System.err);
			}
			code = 3;
		} catch (Throwable t) {
			t.printStackTrace(System.err);
			code = 4;
		}
		jsonOut.flush();
		System.err.flush();
		// ValidationSupportChain (HAPI 8.x) owns a non-daemon executor thread: a plain return would hang.
		System.exit(code);
	}

	private static String usage() {
		return "usage: ValidateMain [--ig DIR]... [--package FILE.tgz]... [--profile URL]... [--stdin-list]\n"
				+ "                    [--strict-unknown-code-systems] [--allow-snapshot-problems] [--no-warmup]\n"
				+ "                    [--allow-any-extensions] [--extension-domain URL]... [--display-issues-are-warnings]\n"
				+ "                    [--] FILE.json...";
	}

	private static Options parse(String[] args) throws UsageException {
		Options o = new Options();
		boolean optionsDone = false;
		for (int i = 0; i < args.length; i++) {
			String a = args[i];
			if (optionsDone || !a.startsWith("--")) {
				o.files.add(a);
				continue;
			}
			switch (a) {
				case "--" -> optionsDone = true;
				case "--ig" -> o.igDirs.add(Path.of(value(args, ++i, a)));
				case "--package" -> o.packages.add(Path.of(value(args, ++i, a)));
				case "--profile" -> o.profiles.add(value(args, ++i, a));
				case "--stdin-list" -> o.stdinList = true;
				case "--strict-unknown-code-systems" -> o.strictUnknownCodeSystems = true;
				case "--no-warmup" -> o.warmup = false;
				case "--allow-snapshot-problems" -> o.allowSnapshotProblems = true;
				case "--allow-any-extensions" -> o.allowAnyExtensions = true;
				case "--display-issues-are-warnings" -> o.displayIssuesAreWarnings = true;
				case "--extension-domain" -> o.extensionDomains.add(value(args, ++i, a));
				case "--help" -> throw new UsageException("help");
				default -> throw new UsageException("unknown option " + a);
			}
		}
		return o;
	}

	private static String value(String[] args, int i, String option) throws UsageException {
		if (i >= args.length) {
			throw new UsageException(option + " needs a value");
		}
		return args[i];
	}

	private static int run(String[] args, PrintStream jsonOut) throws UsageException, SetupException, IOException {
		Options o = parse(args);
		if (o.stdinList) {
			BufferedReader r = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
			String line;
			while ((line = r.readLine()) != null) {
				if (!line.isBlank()) {
					o.files.add(line.strip());
				}
			}
		}

		long t0 = System.nanoTime();
		FhirContext ctx = FhirContext.forR4();
		PrePopulatedValidationSupport ours = new PrePopulatedValidationSupport(ctx);
		List<String> loaded = new ArrayList<>();
		List<IBaseResource> ourProfiles = new ArrayList<>();
		IParser parser = ctx.newJsonParser();
		for (Path dir : o.igDirs) {
			loadDirectory(parser, ours, dir, loaded, ourProfiles);
		}
		for (Path tgz : o.packages) {
			loadPackage(parser, ours, tgz, loaded, ourProfiles);
		}

		ValidationSupportChain chain = new ValidationSupportChain(
				ours,
				new DefaultProfileValidationSupport(ctx),
				new CommonCodeSystemsTerminologyService(ctx),
				terminology(ctx, o),
				new SnapshotGeneratingValidationSupport(ctx));
		FhirInstanceValidator module = new FhirInstanceValidator(chain);
		configureAsHl7Defaults(module, o);
		ENUMERATED = url -> isEnumerated(chain, url);
		FhirValidator validator = ctx.newValidator();
		validator.registerValidatorModule(module);

		ValidationOptions options = new ValidationOptions();
		for (String p : o.profiles) {
			options.addProfile(p);
		}
		long setupMs = millisSince(t0);

		// HAPI drops the snapshot generator's error messages (SnapshotGeneratingValidationSupport discards them,
		// only a DEBUG log line remains): a differential the generator cannot place yields a profile that silently
		// constrains nothing. Generate each differential-only profile once here and fail loudly instead.
		long tc = System.nanoTime();
		List<String> snapshotProblems = checkSnapshots(ctx, chain, ourProfiles);
		long profileCheckMs = millisSince(tc);
		for (String p : snapshotProblems) {
			System.err.println("ValidateMain: snapshot problem: " + p);
		}
		if (!snapshotProblems.isEmpty() && !o.allowSnapshotProblems) {
			throw new SetupException(snapshotProblems.size() + " snapshot generation problem(s) in our profiles "
					+ "(see above); pass --allow-snapshot-problems to validate anyway", null);
		}

		// Warm-up: loads the R4 core definitions and the validator's worker context. Snapshots of our own
		// differential-only profiles are generated lazily on first use (they land in the first file's time).
		long t1 = System.nanoTime();
		if (o.warmup) {
			for (String w : WARMUP_RESOURCES) {
				validator.validateWithResult(w, new ValidationOptions());
			}
		}
		long warmupMs = millisSince(t1);
		long readyUptimeMs = ManagementFactory.getRuntimeMXBean().getUptime();

		StringBuilder results = new StringBuilder();
		List<Double> perFile = new ArrayList<>();
		for (int i = 0; i < o.files.size(); i++) {
			String file = o.files.get(i);
			long tf = System.nanoTime();
			List<Issue> issues = validateFile(validator, options, Path.of(file), o.strictUnknownCodeSystems);
			perFile.add((System.nanoTime() - tf) / 1_000_000.0);
			boolean valid = issues.stream().noneMatch(x -> x.severity.equals("error") || x.severity.equals("fatal"));
			if (i > 0) {
				results.append(',');
			}
			results.append("{\"file\":").append(json(file)).append(",\"valid\":").append(valid)
					.append(",\"issues\":[");
			for (int k = 0; k < issues.size(); k++) {
				if (k > 0) {
					results.append(',');
				}
				issues.get(k).appendJson(results);
			}
			results.append("]}");
		}

		StringBuilder doc = new StringBuilder(results.length() + 512);
		doc.append("{\"results\":[").append(results).append("],\"timing\":{")
				.append("\"setup_ms\":").append(setupMs)
				.append(",\"profile_check_ms\":").append(profileCheckMs)
				.append(",\"warmup_ms\":").append(warmupMs)
				.append(",\"jvm_uptime_at_ready_ms\":").append(readyUptimeMs)
				.append(",\"per_file_ms\":[");
		for (int i = 0; i < perFile.size(); i++) {
			if (i > 0) {
				doc.append(',');
			}
			doc.append(String.format(java.util.Locale.ROOT, "%.3f", perFile.get(i)));
		}
		doc.append("],\"total_ms\":").append(millisSince(t0)).append("},\"harness\":{")
				.append("\"hapi_version\":").append(json(ca.uhn.fhir.util.VersionUtil.getVersion()))
				.append(",\"conformance_resources\":[");
		for (int i = 0; i < loaded.size(); i++) {
			if (i > 0) {
				doc.append(',');
			}
			doc.append(json(loaded.get(i)));
		}
		doc.append("],\"snapshot_problems\":[");
		for (int i = 0; i < snapshotProblems.size(); i++) {
			if (i > 0) {
				doc.append(',');
			}
			doc.append(json(snapshotProblems.get(i)));
		}
		doc.append("],\"unknown_code_system_downgrade\":").append(!o.strictUnknownCodeSystems).append("}}\n");
		jsonOut.print(doc);
		jsonOut.flush();
		return 0;
	}

	/**
	 * Every option this harness sets on HAPI's validator, in one place. The aim is the HL7 reference validator
	 * (org.hl7.fhir.validation's CLI) at its defaults, which is what users of FHIR validate with; HAPI's
	 * FhirInstanceValidator defaults differ from it in two places, set back here:
	 * <ul>
	 * <li>anyExtensionsAllowed = false: the HL7 CLI refuses an extension it cannot find a definition for
	 *     (EXTENSION_EXT_UNKNOWN_NOTHERE, an error) unless -allow-any-extensions or -allow-extension-domain says
	 *     otherwise (InstanceValidator.allowUnknownExtension); HAPI's default (true) makes it a hint.
	 *     --allow-any-extensions / --extension-domain URL give the CLI's options.</li>
	 * <li>errorForUnknownProfiles = false: the HL7 validator warns about a meta.profile it cannot find
	 *     (VALIDATION_VAL_PROFILE_UNKNOWN, a warning) and validates against the base; HAPI's default is an error.</li>
	 * <li>allowExamples = false: the HL7 CLI's -allow-example-urls defaults to false (example.org and acme.com URLs
	 *     refused where it checks them); set explicitly, whatever HAPI's default is.</li>
	 * <li>assumeValidRestReferences: left at the default (false), as the HL7 CLI's.</li>
	 * <li>displays checked, a wrong one an error (see {@link #terminology}): the HL7 CLI's default
	 *     (-display-issues-are-warnings off); HAPI's instance validator never asks for the check.
	 *     --display-issues-are-warnings gives the CLI's option.</li>
	 * <li>references to other resources: HAPI's FhirDefaultPolicyAdvisor says IGNORE, and so does the HL7 CLI's
	 *     ValidationEngine.policyForReference for a URL that names no hl7.org/fhir.org definition (every reference
	 *     in the corpus); contained and bundled ones are checked by both. Nothing to set.</li>
	 * <li>best practice: BestPracticeWarningLevel.Warning in both (warnings only). Nothing to set.</li>
	 * </ul>
	 * One thing no option can give offline: the HL7 CLI asks a terminology server (tx.fhir.org) about code systems
	 * it does not hold (SNOMED CT, LOINC, RxNorm); here there is none, so what only a server could say is
	 * downgraded to a warning (see {@link #TX_SYSTEM_UNKNOWN}; --strict-unknown-code-systems keeps HAPI's
	 * severities), as our validator does without --tx.
	 */
	private static void configureAsHl7Defaults(FhirInstanceValidator module, Options o) {
		module.setAnyExtensionsAllowed(o.allowAnyExtensions);
		if (!o.extensionDomains.isEmpty()) {
			module.setCustomExtensionDomains(o.extensionDomains);
		}
		module.setErrorForUnknownProfiles(false);
		module.setAllowExamples(false);
	}

	/**
	 * The in-memory terminology service, with the HL7 CLI's display rule (Hl7DisplayCheck says how it is found
	 * and judged) at its default severity, error, or warning with --display-issues-are-warnings.
	 */
	private static InMemoryTerminologyServerValidationSupport terminology(FhirContext ctx, Options o) {
		InMemoryTerminologyServerValidationSupport tx = new Hl7DisplayCheck(ctx);
		if (o.displayIssuesAreWarnings) {
			tx.setIssueSeverityForCodeDisplayMismatch(ca.uhn.fhir.context.support.IValidationSupport.IssueSeverity.WARNING);
		}
		return tx;
	}

	private static long millisSince(long nanoStart) {
		return (System.nanoTime() - nanoStart) / 1_000_000L;
	}

	// ---------------------------------------------------------------- conformance resources

	private static void loadDirectory(IParser parser, PrePopulatedValidationSupport ours, Path dir, List<String> loaded,
			List<IBaseResource> profiles) throws SetupException {
		if (!Files.isDirectory(dir)) {
			throw new SetupException("--ig " + dir + " is not a directory", null);
		}
		List<Path> jsonFiles = new ArrayList<>();
		try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, "*.json")) {
			for (Path p : ds) {
				if (Files.isRegularFile(p)) {
					jsonFiles.add(p);
				}
			}
		} catch (IOException e) {
			throw new SetupException("cannot list " + dir, e);
		}
		jsonFiles.sort(null);
		for (Path p : jsonFiles) {
			String text;
			try {
				text = Files.readString(p, StandardCharsets.UTF_8);
			} catch (IOException e) {
				throw new SetupException("cannot read " + p, e);
			}
			addConformance(parser, ours, text, p.toString(), loaded, profiles);
		}
	}

	private static void loadPackage(IParser parser, PrePopulatedValidationSupport ours, Path tgz, List<String> loaded,
			List<IBaseResource> profiles) throws SetupException {
		try (InputStream in = Files.newInputStream(tgz)) {
			NpmPackage npm = NpmPackage.fromPackage(in);
			for (String name : npm.listResources(CONFORMANCE_TYPES.toArray(new String[0]))) {
				try (InputStream r = npm.load("package", name)) {
					String text = new String(r.readAllBytes(), StandardCharsets.UTF_8);
					addConformance(parser, ours, text, tgz + "!package/" + name, loaded, profiles);
				}
			}
		} catch (IOException e) {
			throw new SetupException("cannot read package " + tgz, e);
		}
	}

	private static void addConformance(
			IParser parser, PrePopulatedValidationSupport ours, String text, String origin, List<String> loaded,
			List<IBaseResource> profiles) throws SetupException {
		if (!text.contains("\"resourceType\"")) {
			// package.json and other non-resource JSON beside the profiles
			System.err.println("ValidateMain: skipping " + origin + " (not a FHIR resource)");
			return;
		}
		IBaseResource res;
		try {
			res = parser.parseResource(text);
		} catch (RuntimeException e) {
			throw new SetupException("cannot parse conformance resource " + origin + ": " + e.getMessage(), e);
		}
		String type = res.fhirType();
		if (!CONFORMANCE_TYPES.contains(type)) {
			System.err.println("ValidateMain: skipping " + origin + " (" + type + ")");
			return;
		}
		ours.addResource(res);
		loaded.add(type + " " + origin);
		if (type.equals("StructureDefinition")) {
			res.setUserData(ORIGIN_KEY, origin);
			profiles.add(res);
		}
	}

	private static final String ORIGIN_KEY = ValidateMain.class.getName() + ".origin";

	/**
	 * Generates the snapshot of every differential-only StructureDefinition of ours with the same generator HAPI
	 * uses (ProfileUtilities over the chain), keeping the error messages HAPI throws away.
	 */
	private static List<String> checkSnapshots(FhirContext ctx, ValidationSupportChain chain,
			List<IBaseResource> profiles) {
		List<String> problems = new ArrayList<>();
		if (profiles.isEmpty()) {
			return problems;
		}
		WorkerContextValidationSupportAdapter worker =
				WorkerContextValidationSupportAdapter.newVersionSpecificWorkerContextWrapper(chain);
		VersionCanonicalizer canonicalizer = new VersionCanonicalizer(ctx);
		for (IBaseResource res : profiles) {
			String origin = (String) res.getUserData(ORIGIN_KEY);
			org.hl7.fhir.r5.model.StructureDefinition sd =
					canonicalizer.structureDefinitionToCanonical(ctx.newTerser().clone(res));
			String label = sd.getUrl() + " (" + origin + ")";
			if (sd.hasSnapshot() && !sd.getSnapshot().getElement().isEmpty()) {
				continue; // shipped with a snapshot: nothing is generated at validation time
			}
			if (!sd.hasBaseDefinition()) {
				problems.add(label + ": no snapshot and no baseDefinition");
				continue;
			}
			org.hl7.fhir.r5.model.StructureDefinition base =
					worker.fetchResource(org.hl7.fhir.r5.model.StructureDefinition.class, sd.getBaseDefinition());
			if (base == null) {
				problems.add(label + ": base definition " + sd.getBaseDefinition() + " not found");
				continue;
			}
			List<ValidationMessage> messages = new ArrayList<>();
			try {
				new ProfileUtilities(worker, messages, new ProfileKnowledgeWorkerR5(ctx))
						.generateSnapshot(base, sd, sd.getUrl(), null, sd.getName());
			} catch (RuntimeException e) {
				problems.add(label + ": snapshot generation failed: " + e.getMessage());
				continue;
			}
			for (ValidationMessage m : messages) {
				if (m.getLevel() == ValidationMessage.IssueSeverity.ERROR
						|| m.getLevel() == ValidationMessage.IssueSeverity.FATAL) {
					problems.add(label + ": " + m.getLocation() + ": " + m.getMessage());
				}
			}
		}
		return problems;
	}

	// ---------------------------------------------------------------- validation

	private static final class Issue {
		String severity;
		String messageId;
		String location;
		String expression;
		Integer line;
		Integer col;
		String message;
		String downgradedFrom;

		void appendJson(StringBuilder b) {
			b.append("{\"severity\":").append(json(severity))
					.append(",\"messageId\":").append(json(messageId))
					.append(",\"location\":").append(json(location))
					.append(",\"expression\":").append(json(expression))
					.append(",\"line\":").append(line == null || line < 0 ? "null" : line.toString())
					.append(",\"col\":").append(col == null || col < 0 ? "null" : col.toString())
					.append(",\"message\":").append(json(message));
			if (downgradedFrom != null) {
				b.append(",\"downgradedFrom\":").append(json(downgradedFrom));
			}
			b.append('}');
		}
	}

	private static List<Issue> validateFile(FhirValidator validator, ValidationOptions options, Path file,
			boolean strictUnknownCodeSystems) {
		List<Issue> out = new ArrayList<>();
		String text;
		try {
			text = Files.readString(file, StandardCharsets.UTF_8);
		} catch (IOException e) {
			out.add(harnessIssue("HARNESS_READ_ERROR", "cannot read file: " + e));
			return out;
		}
		ValidationResult result;
		try {
			result = validator.validateWithResult(text, options);
		} catch (RuntimeException e) {
			// e.g. malformed JSON: HAPI 8.8.0 throws (Gson JsonSyntaxException) instead of reporting an issue
			System.err.println("ValidateMain: " + file + ": " + e);
			out.add(harnessIssue("HARNESS_EXCEPTION", e.toString()));
			return out;
		}
		for (SingleValidationMessage m : result.getMessages()) {
			List<String> texts = new ArrayList<>();
			if (m.hasSliceMessages()) {
				for (String s : m.getSliceMessages()) {
					texts.add(m.getMessage() + " - " + s);
				}
			} else {
				texts.add(m.getMessage());
			}
			for (String t : texts) {
				Issue i = new Issue();
				i.severity = m.getSeverity() == null ? "information" : m.getSeverity().getCode();
				i.messageId = m.getMessageId();
				// HAPI's ValidationResult#toOperationOutcome puts this FHIRPath-style string into both
				// OperationOutcome.issue.location and .expression (plus "Line[n] Col[n]" as a second location).
				i.location = m.getLocationString();
				i.expression = m.getLocationString();
				i.line = m.getLocationLine();
				i.col = m.getLocationCol();
				i.message = t;
				out.add(i);
			}
		}
		if (!strictUnknownCodeSystems) {
			downgradeUnknownCodeSystems(out);
		}
		return out;
	}

	/** Rules 1 and 2 of the comment on {@link #TX_SYSTEM_UNKNOWN}. */
	private static void downgradeUnknownCodeSystems(List<Issue> issues) {
		Set<String> unknownAt = new HashSet<>();
		for (Issue i : issues) {
			if (isUnknownCodeSystemMessage(i)) {
				unknownAt.add(String.valueOf(i.location));
			}
		}
		for (Issue i : issues) {
			if (!"error".equals(i.severity) && !"fatal".equals(i.severity)) {
				continue;
			}
			boolean rule1 = isUnknownCodeSystemMessage(i);
			boolean rule2 = i.messageId != null && i.messageId.startsWith(TX_NOVALID_PREFIX)
					&& unknownAt.contains(String.valueOf(i.location)) && !namesEnumeratedValueSet(i.message);
			if (rule1 || rule2) {
				i.downgradedFrom = i.severity;
				i.severity = ResultSeverityEnum.WARNING.getCode();
			}
		}
	}

	/** Whether membership in the value set the message names is decidable offline: every include lists its
	 * codes or takes a whole code system we hold completely. Then a miss stays an error, even for a coding
	 * whose own system is unknown (LOINC, ICD-10-CM, or a made-up one). */
	private static java.util.function.Predicate<String> ENUMERATED = url -> false;
	private static final java.util.regex.Pattern VALUE_SET_URL =
			java.util.regex.Pattern.compile("(https?://[^\\s'|\"]+/ValueSet/[^\\s'|\"]+)");

	private static boolean namesEnumeratedValueSet(String message) {
		java.util.regex.Matcher m = VALUE_SET_URL.matcher(message == null ? "" : message);
		return m.find() && ENUMERATED.test(m.group(1));
	}

	private static boolean isEnumerated(ValidationSupportChain chain, String url) {
		IBaseResource found = chain.fetchValueSet(url);
		if (!(found instanceof org.hl7.fhir.r4.model.ValueSet)) {
			return false;
		}
		org.hl7.fhir.r4.model.ValueSet vs = (org.hl7.fhir.r4.model.ValueSet) found;
		if (!vs.hasCompose() || vs.getCompose().getInclude().isEmpty()) {
			return false;
		}
		for (org.hl7.fhir.r4.model.ValueSet.ConceptSetComponent inc : vs.getCompose().getInclude()) {
			if (inc.hasFilter() || inc.hasValueSet()) {
				return false;
			}
			if (!inc.hasConcept() && !isCompleteCodeSystem(chain, inc.getSystem())) {
				return false;
			}
		}
		return true;
	}

	private static boolean isCompleteCodeSystem(ValidationSupportChain chain, String system) {
		IBaseResource cs = system == null ? null : chain.fetchCodeSystem(system);
		return cs instanceof org.hl7.fhir.r4.model.CodeSystem
				&& ((org.hl7.fhir.r4.model.CodeSystem) cs).getContent()
						== org.hl7.fhir.r4.model.CodeSystem.CodeSystemContentMode.COMPLETE;
	}

	private static boolean isUnknownCodeSystemMessage(Issue i) {
		String id = i.messageId == null ? "" : i.messageId;
		String msg = i.message == null ? "" : i.message;
		return (id.equals(TX_SYSTEM_UNKNOWN) && msg.contains("Unknown Code System"))
				|| (id.equals(TX_PASSTHROUGH) && msg.contains("CodeSystem is unknown and can't be validated"))
				|| ((id.equals(TX_PASSTHROUGH) || id.equals(TX_NOVALID_12))
						&& msg.contains("Unable to expand ValueSet because CodeSystem could not be found"))
				|| (id.equals(TX_PASSTHROUGH) && msg.contains(
						"Unable to expand ValueSet because CodeSystem has CodeSystem.content=not-present"));
	}

	private static Issue harnessIssue(String id, String message) {
		Issue i = new Issue();
		i.severity = "fatal";
		i.messageId = id;
		i.message = message;
		return i;
	}

	// ---------------------------------------------------------------- JSON output

	static String json(String s) {
		if (s == null) {
			return "null";
		}
		StringBuilder b = new StringBuilder(s.length() + 2).append('"');
		for (int k = 0; k < s.length(); k++) {
			char c = s.charAt(k);
			switch (c) {
				case '"' -> b.append("\\\"");
				case '\\' -> b.append("\\\\");
				case '\n' -> b.append("\\n");
				case '\r' -> b.append("\\r");
				case '\t' -> b.append("\\t");
				default -> {
					if (c < 0x20) {
						b.append(String.format("\\u%04x", (int) c));
					} else {
						b.append(c);
					}
				}
			}
		}
		return b.append('"').toString();
	}

	private static final class UsageException extends Exception {
		UsageException(String m) {
			super(m);
		}
	}

	private static final class SetupException extends Exception {
		SetupException(String m, Throwable cause) {
			super(m, cause);
		}
	}

}
