package org.ketaminefhir.peer;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.ConceptValidationOptions;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.context.support.ValidationSupportContext;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.CodeSystem;

import java.util.List;
import java.util.Set;
import java.util.function.Function;

/**
 * HAPI's in-memory terminology checks with the HL7 validator CLI's display rule, which HAPI 8.8.0's instance
 * validator never applies: its WorkerContextValidationSupportAdapter.convertConceptValidationOptions drops the
 * "validate display" request, so a wrong Coding.display gives no finding at all, where the HL7 CLI (without
 * -display-issues-are-warnings) gives an error.
 *
 * <p>The rule is the HL7 core's (org.hl7.fhir.r5 6.7.9, ValueSetValidator.validateCode): a display is right when it
 * equals, ignoring case, the code's display or one of its designations in the CodeSystem; otherwise
 * Display_Name_for__should_be_one_of__instead_of (or its _WS_ variant when only whitespace differs) at the severity
 * dispWarning() gives, ERROR unless display issues are warnings. It applies where the HL7 CLI judges the display
 * from a CodeSystem it holds, so only codes of a CodeSystem whose content is complete here (R4's, HL7
 * terminology's, a loaded IG's; not HAPI's own tables, see HAPI_TABLES); a display known only from a value set's
 * list of a system we lack (LOINC, SNOMED CT) is a question for the terminology server, which offline there is none
 * of, and stays unchecked as before.
 * HAPI's own comparison (exact, display only) is used only to find a mismatch; the rule above then decides it.
 */
final class Hl7DisplayCheck extends InMemoryTerminologyServerValidationSupport {

	/**
	 * Code systems HAPI builds from its own tables (CommonCodeSystemsTerminologyService: ISO 3166 countries, ISO 4217
	 * currencies, BCP-47 languages, BCP-13 mime types, UCUM, USPS states), which are no CodeSystem the HL7 CLI holds:
	 * it asks the terminology server about them, and HAPI's displays are not the standards' (ISO 3166-1's English
	 * short name of US is "United States of America", HAPI's table says "United States"). Offline, as for LOINC,
	 * their displays stay unchecked.
	 */
	private static final Set<String> HAPI_TABLES = Set.of(
			CommonCodeSystemsTerminologyService.COUNTRIES_CODESYSTEM_URL,
			CommonCodeSystemsTerminologyService.CURRENCIES_CODESYSTEM_URL,
			CommonCodeSystemsTerminologyService.LANGUAGES_CODESYSTEM_URL,
			CommonCodeSystemsTerminologyService.MIMETYPES_CODESYSTEM_URL,
			CommonCodeSystemsTerminologyService.UCUM_CODESYSTEM_URL,
			CommonCodeSystemsTerminologyService.USPS_CODESYSTEM_URL);

	Hl7DisplayCheck(FhirContext ctx) {
		super(ctx);
		setIssueSeverityForCodeDisplayMismatch(IssueSeverity.ERROR);
	}

	@Override
	public CodeValidationResult validateCode(ValidationSupportContext context, ConceptValidationOptions options,
			String system, String code, String display, String valueSetUrl) {
		return judged(context, options, system, code, display,
				o -> super.validateCode(context, o, system, code, display, valueSetUrl));
	}

	@Override
	public CodeValidationResult validateCodeInValueSet(ValidationSupportContext context,
			ConceptValidationOptions options, String system, String code, String display, IBaseResource valueSet) {
		return judged(context, options, system, code, display,
				o -> super.validateCodeInValueSet(context, o, system, code, display, valueSet));
	}

	/** HAPI's answer as asked; for a code it found with a display, asked again with the display checked. */
	private CodeValidationResult judged(ValidationSupportContext context, ConceptValidationOptions options,
			String system, String code, String display, Function<ConceptValidationOptions, CodeValidationResult> ask) {
		CodeValidationResult plain = ask.apply(options);
		if (!wantsDisplayCheck(plain, display)) {
			return plain;
		}
		return decide(context, plain, ask.apply(withDisplay(options)), system, code, display);
	}

	/** A code HAPI found (no error) with a display to judge. */
	private static boolean wantsDisplayCheck(CodeValidationResult plain, String display) {
		return plain != null && plain.isOk() && display != null && !display.isBlank();
	}

	private static ConceptValidationOptions withDisplay(ConceptValidationOptions options) {
		ConceptValidationOptions copy = ConceptValidationOptions.copy(options);
		return (copy == null ? new ConceptValidationOptions() : copy).setValidateDisplay(true);
	}

	/** HAPI's exact comparison said "mismatch": keep it only if the HL7 rule says so too. */
	private CodeValidationResult decide(ValidationSupportContext context, CodeValidationResult plain,
			CodeValidationResult checked, String system, String code, String display) {
		if (checked == null || checked.getSeverity() == null) {
			return plain;
		}
		if (system == null || HAPI_TABLES.contains(system)) {
			return plain;
		}
		IBaseResource found = context.getRootValidationSupport().fetchCodeSystem(system);
		if (!(found instanceof CodeSystem cs) || cs.getContent() != CodeSystem.CodeSystemContentMode.COMPLETE) {
			return plain;
		}
		CodeSystem.ConceptDefinitionComponent concept = find(cs.getConcept(), code);
		if (concept == null || matches(concept, display)) {
			return plain;
		}
		return checked;
	}

	private static CodeSystem.ConceptDefinitionComponent find(List<CodeSystem.ConceptDefinitionComponent> concepts,
			String code) {
		for (CodeSystem.ConceptDefinitionComponent c : concepts) {
			if (code.equals(c.getCode())) {
				return c;
			}
			CodeSystem.ConceptDefinitionComponent nested = find(c.getConcept(), code);
			if (nested != null) {
				return nested;
			}
		}
		return null;
	}

	private static boolean matches(CodeSystem.ConceptDefinitionComponent concept, String display) {
		if (concept.hasDisplay() && display.equalsIgnoreCase(concept.getDisplay())) {
			return true;
		}
		for (CodeSystem.ConceptDefinitionDesignationComponent d : concept.getDesignation()) {
			if (display.equalsIgnoreCase(d.getValue())) {
				return true;
			}
		}
		return false;
	}
}
