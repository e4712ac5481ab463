package org.ketaminefhir.peer.server;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.interceptor.api.IInterceptorService;
import ca.uhn.fhir.jpa.api.IDaoRegistry;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.binstore.DatabaseBinaryContentStorageSvcImpl;
import ca.uhn.fhir.jpa.config.HibernatePropertiesProvider;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.config.util.ResourceCountCacheUtil;
import ca.uhn.fhir.jpa.dao.FulltextSearchSvcImpl;
import ca.uhn.fhir.jpa.dao.IFulltextSearchSvc;
import ca.uhn.fhir.jpa.dao.search.HSearchSortHelperImpl;
import ca.uhn.fhir.jpa.dao.search.IHSearchSortHelper;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect;
import ca.uhn.fhir.jpa.packages.IPackageInstallerSvc;
import ca.uhn.fhir.jpa.packages.PackageInstallOutcomeJson;
import ca.uhn.fhir.jpa.packages.PackageInstallationSpec;
import ca.uhn.fhir.jpa.provider.DaoRegistryResourceSupportedSvc;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.provider.ValueSetOperationProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.search.IStaleSearchDeletingSvc;
import ca.uhn.fhir.jpa.search.StaleSearchDeletingSvcImpl;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import ca.uhn.fhir.jpa.util.ResourceCountCache;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.api.IResourceSupportedSvc;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.interceptor.RequestValidatingInterceptor;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.IValidatorModule;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import jakarta.persistence.EntityManagerFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.UUID;
import javax.sql.DataSource;
import org.apache.commons.dbcp2.BasicDataSource;
import org.hibernate.boot.model.naming.CamelCaseToUnderscoresNamingStrategy;
import org.hibernate.cfg.AvailableSettings;
import org.hibernate.dialect.Dialect;
import org.hibernate.search.mapper.orm.cfg.HibernateOrmMapperSettings;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.orm.jpa.hibernate.SpringImplicitNamingStrategy;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;
import org.springframework.transaction.annotation.EnableTransactionManagement;

/**
 * The bean set HAPI's {@link JpaR4Config} leaves to the application (the starter's StarterJpaConfig and
 * FhirServerConfigCommon, trimmed to what an R4 EHR peer on H2 needs), and the RESTful server itself.
 */
@Configuration
@EnableTransactionManagement
@Import({JpaR4Config.class, ThreadPoolFactoryConfig.class})
public class PeerJpaConfig {

	private static final Logger ourLog = LoggerFactory.getLogger(PeerJpaConfig.class);

	// ------------------------------------------------------------------ storage

	@Bean(destroyMethod = "close")
	public BasicDataSource dataSource(@Value("${kfhir.h2-database:}") String databaseName,
			@Value("${kfhir.h2-url:}") String h2Url) {
		String name = databaseName == null || databaseName.isBlank() ? "kfhir-" + UUID.randomUUID() : databaseName;
		BasicDataSource ds = new BasicDataSource();
		ds.setDriverClassName("org.h2.Driver");
		// DB_CLOSE_DELAY=-1: the database lives as long as the JVM, not as long as the last open connection.
		// kfhir.h2-url replaces it with another H2 database: bench/serving.py runs HAPI on a durable H2 file
		// (jdbc:h2:file:...), as its users would, so that it is not compared from memory against our disk.
		ds.setUrl(h2Url == null || h2Url.isBlank() ? "jdbc:h2:mem:" + name + ";DB_CLOSE_DELAY=-1" : h2Url);
		ds.setUsername("sa");
		ds.setPassword("");
		ds.setMaxTotal(20);
		return ds;
	}

	@Bean
	public JpaStorageSettings jpaStorageSettings() {
		JpaStorageSettings s = new JpaStorageSettings();
		// Clients (we) assign ids such as UUIDs or "123"; server-assigned ids become UUIDs.
		s.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ANY);
		s.setResourceServerIdStrategy(JpaStorageSettings.IdStrategyEnum.UUID);
		// Never answer a search from a cached earlier search: tests write and search within milliseconds.
		s.setReuseCachedSearchResultsForMillis(null);
		// Like a real EHR: a reference to a resource it does not hold is refused.
		s.setEnforceReferentialIntegrityOnWrite(true);
		s.setEnforceReferentialIntegrityOnDelete(true);
		s.setAllowMultipleDelete(true);
		s.setExpungeEnabled(true);
		s.setDeleteExpungeEnabled(true);
		// No ValueSet pre-expansion: it needs Hibernate Search, which is off; validation expands in memory.
		s.setPreExpandValueSets(false);
		s.setEnableTaskPreExpandValueSets(false);
		// Our IG's conformance resources may be draft; install them all.
		s.setValidateResourceStatusForPackageUpload(false);
		return s;
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	@Bean
	public SubscriptionSettings subscriptionSettings() {
		return new SubscriptionSettings();
	}

	@Bean
	public IEmailSender emailSender() {
		return theDetails -> {};
	}

	@Bean
	public DatabaseBinaryContentStorageSvcImpl databaseBinaryStorageSvc() {
		return new DatabaseBinaryContentStorageSvcImpl();
	}

	@Primary
	@Bean
	public HibernatePropertiesProvider hibernatePropertiesProvider() {
		return new HibernatePropertiesProvider() {
			private final Dialect myDialect = new HapiFhirH2Dialect();

			@Override
			public Dialect getDialect() {
				return myDialect;
			}
		};
	}

	@Primary
	@Bean
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings storageSettings,
			DataSource dataSource) {
		LocalContainerEntityManagerFactoryBean emf =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
		Map<String, Object> props = new HashMap<>(emf.getJpaPropertyMap());
		props.put(AvailableSettings.DIALECT, HapiFhirH2Dialect.class.getName());
		props.put(AvailableSettings.SCANNER, "org.hibernate.boot.archive.scan.internal.DisabledScanner");
		props.put(AvailableSettings.IMPLICIT_NAMING_STRATEGY, SpringImplicitNamingStrategy.class.getName());
		props.put(AvailableSettings.PHYSICAL_NAMING_STRATEGY, CamelCaseToUnderscoresNamingStrategy.class.getName());
		props.put(AvailableSettings.FORMAT_SQL, "false");
		props.put(AvailableSettings.SHOW_SQL, "false");
		props.put(AvailableSettings.HBM2DDL_AUTO, "update");
		props.put(AvailableSettings.STATEMENT_BATCH_SIZE, "20");
		props.put(AvailableSettings.USE_QUERY_CACHE, "false");
		props.put(AvailableSettings.USE_SECOND_LEVEL_CACHE, "false");
		props.put(AvailableSettings.USE_STRUCTURED_CACHE, "false");
		props.put(AvailableSettings.USE_MINIMAL_PUTS, "false");
		props.put(HibernateOrmMapperSettings.ENABLED, "false");
		emf.setPersistenceUnitName("HAPI_PU");
		emf.setJpaPropertyMap(props);
		emf.setDataSource(dataSource);
		return emf;
	}

	@Primary
	@Bean
	public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
		JpaTransactionManager tm = new JpaTransactionManager();
		tm.setEntityManagerFactory(entityManagerFactory);
		return tm;
	}

	// ------------------------------------------------------------------ search

	@Bean
	public IFulltextSearchSvc fullTextSearchSvc() {
		return new FulltextSearchSvcImpl();
	}

	@Bean
	public IHSearchSortHelper hSearchSortHelper(ISearchParamRegistry searchParamRegistry) {
		return new HSearchSortHelperImpl(searchParamRegistry);
	}

	@Bean
	public IStaleSearchDeletingSvc staleSearchDeletingSvc() {
		return new StaleSearchDeletingSvcImpl();
	}

	@Bean
	public DatabaseBackedPagingProvider databaseBackedPagingProvider(
			@Value("${kfhir.default-page-size:20}") int defaultPageSize,
			@Value("${kfhir.max-page-size:200}") int maxPageSize) {
		DatabaseBackedPagingProvider paging = new DatabaseBackedPagingProvider();
		paging.setDefaultPageSize(defaultPageSize);
		paging.setMaximumPageSize(maxPageSize);
		return paging;
	}

	@Bean
	public IResourceSupportedSvc resourceSupportedSvc(IDaoRegistry daoRegistry) {
		return new DaoRegistryResourceSupportedSvc(daoRegistry);
	}

	@Bean(name = "myResourceCountsCache")
	public ResourceCountCache resourceCountsCache(IFhirSystemDao<?, ?> systemDao) {
		return ResourceCountCacheUtil.newResourceCountCache(systemDao);
	}

	// ------------------------------------------------------------------ validation and IG

	@Bean
	public UnknownCodeSystemDowngrade unknownCodeSystemDowngrade(
			IValidationSupport validationSupport, IInterceptorService jpaInterceptorService) {
		UnknownCodeSystemDowngrade downgrade = new UnknownCodeSystemDowngrade(validationSupport);
		// The DAO's $validate and any storage-level validation broadcast VALIDATION_COMPLETED here.
		jpaInterceptorService.registerInterceptor(downgrade);
		return downgrade;
	}

	/** Installs the IG package named by kfhir.ig-package before the server takes requests (validation support
	 * caches StructureDefinitions for good, so they must be there before the first validation). */
	@Bean
	public PackageInstallOutcomeJson igPackageInstallation(
			@Value("${kfhir.ig-package:}") String igPackage,
			IPackageInstallerSvc packageInstaller)
			throws Exception {
		if (igPackage == null || igPackage.isBlank()) {
			ourLog.info("No IG package configured (kfhir.ig-package)");
			return new PackageInstallOutcomeJson();
		}
		Path path = Path.of(igPackage).toAbsolutePath();
		if (!Files.isRegularFile(path)) {
			throw new IllegalStateException("kfhir.ig-package: no such file: " + path);
		}
		byte[] contents = Files.readAllBytes(path);
		org.hl7.fhir.utilities.npm.NpmPackage npm =
				org.hl7.fhir.utilities.npm.NpmPackage.fromPackage(new java.io.ByteArrayInputStream(contents));
		PackageInstallationSpec spec = new PackageInstallationSpec()
				.setName(npm.name())
				.setVersion(npm.version())
				.setPackageContents(contents)
				.setInstallMode(PackageInstallationSpec.InstallModeEnum.STORE_AND_INSTALL)
				.setFetchDependencies(false);
		long start = System.currentTimeMillis();
		PackageInstallOutcomeJson outcome = packageInstaller.install(spec);
		ourLog.info(
				"Installed IG package {}#{} from {} in {} ms: {}",
				npm.name(),
				npm.version(),
				path,
				System.currentTimeMillis() - start,
				outcome.getResourcesInstalled());
		return outcome;
	}

	// ------------------------------------------------------------------ the server

	@Bean
	public RestfulServer restfulServer(
			IFhirSystemDao<?, ?> fhirSystemDao,
			ResourceProviderFactory resourceProviderFactory,
			IJpaSystemProvider jpaSystemProvider,
			ValueSetOperationProvider valueSetOperations,
			JpaStorageSettings storageSettings,
			ISearchParamRegistry searchParamRegistry,
			IValidationSupport validationSupport,
			DatabaseBackedPagingProvider pagingProvider,
			IValidatorModule validatorModule,
			IInterceptorService jpaInterceptorService,
			UnknownCodeSystemDowngrade downgrade,
			PackageInstallOutcomeJson igPackageInstallation) {
		FhirContext ctx = fhirSystemDao.getContext();
		RestfulServer server = new RestfulServer(ctx);
		server.registerProviders(resourceProviderFactory.createProviders());
		// transaction/batch, system _history, $expunge...
		server.registerProvider(jpaSystemProvider);
		// ValueSet/$expand and ValueSet/$validate-code (a bean of HAPI's JpaConfig, registered as the starter does):
		// the validator's terminology-server tests (tests/validation/test_tx_server.py) ask them
		server.registerProvider(valueSetOperations);
		JpaCapabilityStatementProvider capabilities = new JpaCapabilityStatementProvider(
				server, fhirSystemDao, storageSettings, searchParamRegistry, validationSupport);
		capabilities.setImplementationDescription("Ketamine FHIR Bridge test peer (HAPI FHIR 8.8.0 JPA, H2)");
		server.setServerConformanceProvider(capabilities);
		server.setPagingProvider(pagingProvider);
		server.setDefaultResponseEncoding(EncodingEnum.JSON);

		// Request validation: every request body (whole transaction Bundles included) against R4 and the
		// profiles it declares, which our IG package supplies. Errors fail the request (HTTP 422).
		FhirValidator validator = ctx.newValidator();
		validator.registerValidatorModule(validatorModule);
		validator.setInterceptorBroadcaster(jpaInterceptorService); // VALIDATION_COMPLETED -> downgrade
		RequestValidatingInterceptor requestValidation = new RequestValidatingInterceptor();
		requestValidation.setValidator(validator);
		requestValidation.setFailOnSeverity(ResultSeverityEnum.ERROR);
		server.registerInterceptor(requestValidation);
		ourLog.info("FHIR server ready to start; IG resources installed: {}", igPackageInstallation.getResourcesInstalled());
		return server;
	}
}
