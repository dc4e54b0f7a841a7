// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "./IERC20.sol";
import {ReentrancyGuard} from "./ReentrancyGuard.sol";
import {TokenTransfers} from "./TokenTransfers.sol";

/// Providers and their stake, what governance allows to run, and which enclave
/// signer keys were attested when.
///
/// Roles: `governance` (an owner address, replaceable by a multisig through a
/// two-step transfer) keeps the allowed measurement sets and model digests,
/// names the operator and slashes stake; the `operator` (the router's
/// settlement key) records signer keys as nodes pass attestation and removes
/// them when they fall out of policy; providers stake and unbond.
///
/// A signer's history is a list of periods `[from, until)`; a receipt issued
/// at `t` is covered when `t` falls in one of them (`signerActiveAt`).
contract Registry is ReentrancyGuard {
    using TokenTransfers for IERC20;

    struct Provider {
        uint256 stake;
        uint256 unbonding;
        uint64 unbondingAvailableAt;
        bool registered;
    }

    struct Period {
        uint64 from;
        uint64 until; // 0 while open
    }

    struct Signer {
        address provider;
        bytes32 bundleHash;
        bytes32 measurement;
        bytes32 model;
        Period[] periods;
    }

    error NotGovernance(address caller);
    error NotPendingGovernance(address caller);
    error NotOperator(address caller);
    error ZeroAddress();
    error ZeroAmount();
    error AlreadyRegistered(address provider);
    error NotRegistered(address provider);
    error StakeBelowMinimum(address provider, uint256 stake, uint256 minimum);
    error InsufficientStake(address provider, uint256 stake, uint256 requested);
    error NothingUnbonding(address provider);
    error UnbondingNotReady(address provider, uint64 availableAt);
    error MeasurementNotAllowed(bytes32 measurement);
    error ModelNotAllowed(bytes32 model);
    error SignerAlreadyActive(address signer);
    error SignerNotActive(address signer);
    error SignerOfOtherProvider(address signer, address provider);
    error BadValidFrom(uint64 validFrom, uint64 earliest, uint64 latest);

    event GovernanceTransferStarted(address indexed current, address indexed pending);
    event GovernanceTransferred(address indexed previous, address indexed current);
    event OperatorChanged(address indexed previous, address indexed current);
    event MinimumStakeChanged(uint256 minimum);
    event MeasurementAllowed(bytes32 indexed measurement, bool allowed);
    event ModelAllowed(bytes32 indexed model, bool allowed);
    event ProviderRegistered(address indexed provider, uint256 stake);
    event StakeAdded(address indexed provider, uint256 amount, uint256 stake);
    event UnbondingStarted(address indexed provider, uint256 amount, uint64 availableAt);
    event StakeWithdrawn(address indexed provider, uint256 amount);
    event Slashed(address indexed provider, uint256 amount, string reason);
    event SignerRecorded(
        address indexed signer,
        address indexed provider,
        bytes32 bundleHash,
        bytes32 measurement,
        bytes32 model,
        uint64 validFrom
    );
    event SignerRemoved(address indexed signer, uint64 removedAt, string reason);

    /// How far back the operator may date a signer's registration (to the
    /// attestation that proved it, before the transaction was mined).
    uint64 public constant MAX_BACKDATE = 1 hours;

    IERC20 public immutable stakeToken;
    uint64 public immutable unbondingDelay;
    address public governance;
    address public pendingGovernance;
    address public operator;
    uint256 public minimumStake;

    mapping(address => Provider) public providers;
    mapping(bytes32 => bool) public allowedMeasurements;
    mapping(bytes32 => bool) public allowedModels;
    mapping(address => Signer) private signers;

    modifier onlyGovernance() {
        if (msg.sender != governance) revert NotGovernance(msg.sender);
        _;
    }

    modifier onlyOperator() {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        _;
    }

    constructor(IERC20 stakeToken_, address operator_, uint256 minimumStake_, uint64 unbondingDelay_) {
        if (address(stakeToken_) == address(0) || operator_ == address(0)) revert ZeroAddress();
        stakeToken = stakeToken_;
        governance = msg.sender;
        operator = operator_;
        minimumStake = minimumStake_;
        unbondingDelay = unbondingDelay_;
        emit GovernanceTransferred(address(0), msg.sender);
        emit OperatorChanged(address(0), operator_);
        emit MinimumStakeChanged(minimumStake_);
    }

    // ---- governance ----

    function transferGovernance(address next) external onlyGovernance {
        pendingGovernance = next;
        emit GovernanceTransferStarted(governance, next);
    }

    function acceptGovernance() external {
        if (msg.sender != pendingGovernance) revert NotPendingGovernance(msg.sender);
        emit GovernanceTransferred(governance, msg.sender);
        governance = msg.sender;
        pendingGovernance = address(0);
    }

    function setOperator(address next) external onlyGovernance {
        if (next == address(0)) revert ZeroAddress();
        emit OperatorChanged(operator, next);
        operator = next;
    }

    function setMinimumStake(uint256 minimum) external onlyGovernance {
        minimumStake = minimum;
        emit MinimumStakeChanged(minimum);
    }

    function setMeasurementAllowed(bytes32 measurement, bool allowed) external onlyGovernance {
        allowedMeasurements[measurement] = allowed;
        emit MeasurementAllowed(measurement, allowed);
    }

    function setModelAllowed(bytes32 model, bool allowed) external onlyGovernance {
        allowedModels[model] = allowed;
        emit ModelAllowed(model, allowed);
    }

    /// Takes up to `amount` from the provider's stake, then from what it is
    /// unbonding, and sends it to governance.
    function slash(address provider, uint256 amount, string calldata reason) external onlyGovernance nonReentrant {
        Provider storage p = providers[provider];
        if (!p.registered) revert NotRegistered(provider);
        if (amount == 0) revert ZeroAmount();
        uint256 fromStake = amount < p.stake ? amount : p.stake;
        p.stake -= fromStake;
        uint256 rest = amount - fromStake;
        uint256 fromUnbonding = rest < p.unbonding ? rest : p.unbonding;
        p.unbonding -= fromUnbonding;
        uint256 taken = fromStake + fromUnbonding;
        emit Slashed(provider, taken, reason);
        if (taken != 0) stakeToken.pay(governance, taken);
    }

    // ---- providers ----

    function register(uint256 amount) external nonReentrant {
        Provider storage p = providers[msg.sender];
        if (p.registered) revert AlreadyRegistered(msg.sender);
        if (amount < minimumStake) revert StakeBelowMinimum(msg.sender, amount, minimumStake);
        p.registered = true;
        p.stake = amount;
        emit ProviderRegistered(msg.sender, amount);
        stakeToken.collect(msg.sender, address(this), amount);
    }

    function addStake(uint256 amount) external nonReentrant {
        Provider storage p = providers[msg.sender];
        if (!p.registered) revert NotRegistered(msg.sender);
        if (amount == 0) revert ZeroAmount();
        p.stake += amount;
        emit StakeAdded(msg.sender, amount, p.stake);
        stakeToken.collect(msg.sender, address(this), amount);
    }

    /// Moves `amount` of stake out of use; it can be withdrawn after
    /// `unbondingDelay` and can be slashed until then. Starting again adds to
    /// what is unbonding and restarts the delay.
    function startUnbonding(uint256 amount) external {
        Provider storage p = providers[msg.sender];
        if (!p.registered) revert NotRegistered(msg.sender);
        if (amount == 0) revert ZeroAmount();
        if (amount > p.stake) revert InsufficientStake(msg.sender, p.stake, amount);
        p.stake -= amount;
        p.unbonding += amount;
        p.unbondingAvailableAt = uint64(block.timestamp) + unbondingDelay;
        emit UnbondingStarted(msg.sender, amount, p.unbondingAvailableAt);
    }

    function withdrawStake() external nonReentrant {
        Provider storage p = providers[msg.sender];
        uint256 amount = p.unbonding;
        if (amount == 0) revert NothingUnbonding(msg.sender);
        if (block.timestamp < p.unbondingAvailableAt) {
            revert UnbondingNotReady(msg.sender, p.unbondingAvailableAt);
        }
        p.unbonding = 0;
        emit StakeWithdrawn(msg.sender, amount);
        stakeToken.pay(msg.sender, amount);
    }

    // ---- signers ----

    /// Records that `signer` (an enclave's receipt key) was attested for
    /// `provider` by the bundle whose hash is `bundleHash`, running an allowed
    /// measurement set and model, from `validFrom` (the attestation's time:
    /// not in the future, at most MAX_BACKDATE ago).
    function recordSigner(
        address signer,
        address provider,
        bytes32 bundleHash,
        bytes32 measurement,
        bytes32 model,
        uint64 validFrom
    ) external onlyOperator {
        if (signer == address(0) || provider == address(0)) revert ZeroAddress();
        Provider storage p = providers[provider];
        if (!p.registered) revert NotRegistered(provider);
        if (p.stake < minimumStake) revert StakeBelowMinimum(provider, p.stake, minimumStake);
        if (!allowedMeasurements[measurement]) revert MeasurementNotAllowed(measurement);
        if (!allowedModels[model]) revert ModelNotAllowed(model);
        uint64 latest = uint64(block.timestamp);
        uint64 earliest = latest > MAX_BACKDATE ? latest - MAX_BACKDATE : 0;
        if (validFrom > latest || validFrom < earliest) revert BadValidFrom(validFrom, earliest, latest);
        Signer storage s = signers[signer];
        if (s.provider != address(0) && s.provider != provider) revert SignerOfOtherProvider(signer, s.provider);
        uint256 n = s.periods.length;
        if (n != 0 && s.periods[n - 1].until == 0) revert SignerAlreadyActive(signer);
        // A new period never starts inside an earlier one.
        if (n != 0 && validFrom < s.periods[n - 1].until) validFrom = s.periods[n - 1].until;
        s.provider = provider;
        s.bundleHash = bundleHash;
        s.measurement = measurement;
        s.model = model;
        s.periods.push(Period({from: validFrom, until: 0}));
        emit SignerRecorded(signer, provider, bundleHash, measurement, model, validFrom);
    }

    /// Ends the signer's open period now.
    function removeSigner(address signer, string calldata reason) external onlyOperator {
        Signer storage s = signers[signer];
        uint256 n = s.periods.length;
        if (n == 0 || s.periods[n - 1].until != 0) revert SignerNotActive(signer);
        uint64 removedAt = uint64(block.timestamp);
        // A period that has not started yet closes empty.
        s.periods[n - 1].until = removedAt > s.periods[n - 1].from ? removedAt : s.periods[n - 1].from;
        emit SignerRemoved(signer, removedAt, reason);
    }

    /// Whether `signer` was registered at time `t` (unix seconds), and for
    /// which provider.
    function signerActiveAt(address signer, uint64 t) external view returns (bool active, address provider) {
        Signer storage s = signers[signer];
        provider = s.provider;
        uint256 n = s.periods.length;
        for (uint256 i = n; i > 0; i--) {
            Period storage period = s.periods[i - 1];
            if (t >= period.from && (period.until == 0 || t < period.until)) return (true, provider);
            if (t >= period.from) break;
        }
        return (false, provider);
    }

    /// Whether `signer` has an open period now.
    function signerActive(address signer) external view returns (bool) {
        Signer storage s = signers[signer];
        uint256 n = s.periods.length;
        return n != 0 && s.periods[n - 1].until == 0;
    }

    function signerRecord(address signer)
        external
        view
        returns (address provider, bytes32 bundleHash, bytes32 measurement, bytes32 model, Period[] memory periods)
    {
        Signer storage s = signers[signer];
        return (s.provider, s.bundleHash, s.measurement, s.model, s.periods);
    }
}
