package org.ketaminefhir.peer.server;

import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Supplier;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r4.model.CodeSystem;
import org.hl7.fhir.r4.model.ValueSet;

/**
 * Downgrades to warnings what only fails because there is no terminology server offline (SNOMED CT, LOINC,
 * RxNorm...), with the same rules as our validator harness (tests/peers/hapi/validator, ValidateMain):
 *
 * <ol>
 *   <li>Terminology_TX_System_Unknown "Unknown Code System"; Terminology_PassThrough_TX_Message "CodeSystem is
 *       unknown and can't be validated"; Terminology_PassThrough_TX_Message / Terminology_TX_NoValid_12 "Unable to
 *       expand ValueSet because CodeSystem could not be found"; and "... CodeSystem has CodeSystem.content=not-present"
 *       (SNOMED CT is a bundled R4 stub). These are the messages of HAPI 8.8.0's
 *       ValidationMessageUnknownCodeSystemPostProcessingInterceptor plus the SNOMED stub.</li>
 *   <li>A Terminology_TX_NoValid_* error at the same location as a rule-1 message, unless the ValueSet it names
 *       is decidable offline (every include lists its codes or takes a complete CodeSystem we hold): membership in
 *       our extensional ValueSets stays an error.</li>
 * </ol>
 * plus one rule the harness does not need for single resources but a server validating transaction Bundles does:
 * <ol start="3">
 *   <li>Reference_REF_CantMatchChoice "Unable to find a profile match for X among choices: P" where X is an entry
 *       of the Bundle being validated whose meta.profile declares every profile in P. The validator checks the
 *       target against P in a nested validation, where rule-1 errors (e.g. an ICD-10-CM code under a required
 *       binding) cannot be downgraded and make the match fail; the entry itself is validated against P in its own
 *       right, and its real errors are reported (and kept) at its own location.</li>
 * </ol>
 * Everything else (structure, cardinality, invariants, our own code systems) keeps HAPI's severity.
 */
@Interceptor
public class UnknownCodeSystemDowngrade {

	private static final String TX_SYSTEM_UNKNOWN = "Terminology_TX_System_Unknown";
	private static final String TX_PASSTHROUGH = "Terminology_PassThrough_TX_Message";
	private static final String TX_NOVALID_12 = "Terminology_TX_NoValid_12";
	private static final String TX_NOVALID_PREFIX = "Terminology_TX_NoValid_";
	private static final String REF_CANT_MATCH_CHOICE = "Reference_REF_CantMatchChoice";
	private static final Pattern CANT_MATCH_CHOICE =
			Pattern.compile("Unable to find a profile match for (\\S+) among choices: (.+)$", Pattern.DOTALL);
	private static final ObjectMapper JSON = new ObjectMapper();
	private static final Pattern VALUE_SET_URL = Pattern.compile("(https?://[^\\s'|\"]+/ValueSet/[^\\s'|\"]+)");

	private final IValidationSupport mySupport;
	private final ConcurrentHashMap<String, Boolean> myEnumerated = new ConcurrentHashMap<>();

	public UnknownCodeSystemDowngrade(IValidationSupport theSupport) {
		mySupport = theSupport;
	}

	@Hook(Pointcut.VALIDATION_COMPLETED)
	public ValidationResult validationCompleted(
			IBaseResource theResource, String theRawResource, ValidationResult theResult) {
		Map<String, Set<String>> memo = new HashMap<>();
		boolean[] computed = {false};
		apply(theResult.getMessages(), () -> {
			if (!computed[0]) {
				memo.putAll(declaredProfilesByFullUrl(theResource, theRawResource));
				computed[0] = true;
			}
			return memo;
		});
		return theResult;
	}

	void apply(List<SingleValidationMessage> theMessages, Supplier<Map<String, Set<String>>> theBundleProfiles) {
		Set<String> unknownAt = new HashSet<>();
		for (SingleValidationMessage m : theMessages) {
			if (isUnknownCodeSystemMessage(m)) {
				unknownAt.add(String.valueOf(m.getLocationString()));
			}
		}
		for (SingleValidationMessage m : theMessages) {
			ResultSeverityEnum severity = m.getSeverity();
			if (severity != ResultSeverityEnum.ERROR && severity != ResultSeverityEnum.FATAL) {
				continue;
			}
			String id = m.getMessageId() == null ? "" : m.getMessageId();
			boolean rule1 = isUnknownCodeSystemMessage(m);
			boolean rule2 = id.startsWith(TX_NOVALID_PREFIX)
					&& unknownAt.contains(String.valueOf(m.getLocationString()))
					&& !namesEnumeratedValueSet(m.getMessage());
			boolean rule3 = id.equals(REF_CANT_MATCH_CHOICE) && targetDeclaresChoices(m.getMessage(), theBundleProfiles);
			if (rule1 || rule2 || rule3) {
				m.setSeverity(ResultSeverityEnum.WARNING);
				m.setMessage("[downgraded from " + severity.getCode() + ": no terminology server] " + m.getMessage());
			}
		}
	}

	private static boolean isUnknownCodeSystemMessage(SingleValidationMessage m) {
		String id = m.getMessageId() == null ? "" : m.getMessageId();
		String msg = m.getMessage() == null ? "" : m.getMessage();
		return (id.equals(TX_SYSTEM_UNKNOWN) && msg.contains("Unknown Code System"))
				|| (id.equals(TX_PASSTHROUGH) && msg.contains("CodeSystem is unknown and can't be validated"))
				|| ((id.equals(TX_PASSTHROUGH) || id.equals(TX_NOVALID_12))
						&& msg.contains("Unable to expand ValueSet because CodeSystem could not be found"))
				|| (id.equals(TX_PASSTHROUGH)
						&& msg.contains(
								"Unable to expand ValueSet because CodeSystem has CodeSystem.content=not-present"));
	}

	private static boolean targetDeclaresChoices(
			String theMessage, Supplier<Map<String, Set<String>>> theBundleProfiles) {
		Matcher matcher = CANT_MATCH_CHOICE.matcher(theMessage == null ? "" : theMessage.trim());
		if (!matcher.matches()) {
			return false;
		}
		Set<String> declared = theBundleProfiles.get().get(matcher.group(1));
		if (declared == null || declared.isEmpty()) {
			return false;
		}
		for (String choice : matcher.group(2).split("[,\\s]+")) {
			if (!choice.isBlank() && !declared.contains(choice.split("\\|")[0])) {
				return false;
			}
		}
		return true;
	}

	/** fullUrl -> meta.profile (without versions) of the entries of the Bundle being validated; empty otherwise. */
	private static Map<String, Set<String>> declaredProfilesByFullUrl(IBaseResource theResource, String theRaw) {
		Map<String, Set<String>> out = new HashMap<>();
		if (theResource instanceof Bundle bundle) {
			for (Bundle.BundleEntryComponent entry : bundle.getEntry()) {
				if (entry.hasFullUrl() && entry.getResource() != null) {
					Set<String> profiles = new HashSet<>();
					entry.getResource().getMeta().getProfile().forEach(p -> profiles.add(p.getValue().split("\\|")[0]));
					out.put(entry.getFullUrl(), profiles);
				}
			}
			return out;
		}
		if (theRaw == null || !theRaw.stripLeading().startsWith("{")) {
			return out;
		}
		try {
			JsonNode root = JSON.readTree(theRaw);
			if (!"Bundle".equals(root.path("resourceType").asText())) {
				return out;
			}
			for (JsonNode entry : root.path("entry")) {
				String fullUrl = entry.path("fullUrl").asText("");
				if (fullUrl.isEmpty()) {
					continue;
				}
				Set<String> profiles = new HashSet<>();
				for (JsonNode p : entry.path("resource").path("meta").path("profile")) {
					profiles.add(p.asText().split("\\|")[0]);
				}
				out.put(fullUrl, profiles);
			}
		} catch (Exception e) {
			// Not JSON we can read: no rule-3 downgrades.
		}
		return out;
	}

	private boolean namesEnumeratedValueSet(String theMessage) {
		Matcher matcher = VALUE_SET_URL.matcher(theMessage == null ? "" : theMessage);
		return matcher.find() && myEnumerated.computeIfAbsent(matcher.group(1), this::isEnumerated);
	}

	private boolean isEnumerated(String theUrl) {
		IBaseResource found = mySupport.fetchValueSet(theUrl);
		if (!(found instanceof ValueSet vs) || !vs.hasCompose() || vs.getCompose().getInclude().isEmpty()) {
			return false;
		}
		for (ValueSet.ConceptSetComponent include : vs.getCompose().getInclude()) {
			if (include.hasFilter() || include.hasValueSet()) {
				return false;
			}
			if (!include.hasConcept() && !isCompleteCodeSystem(include.getSystem())) {
				return false;
			}
		}
		return true;
	}

	private boolean isCompleteCodeSystem(String theSystem) {
		IBaseResource cs = theSystem == null ? null : mySupport.fetchCodeSystem(theSystem);
		return cs instanceof CodeSystem codeSystem
				&& codeSystem.getContent() == CodeSystem.CodeSystemContentMode.COMPLETE;
	}
}
